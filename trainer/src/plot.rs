//! loss.png: the training loss against the iteration, raw and smoothed. Rendered in memory with plotters and
//! a bundled font (DejaVu Sans, see assets/DejaVuSans-LICENSE.txt), so no system font library is needed.

use std::sync::Once;

use plotters::prelude::*;

use crate::train::{smooth, SMOOTHING};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 600;
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is valid; a failure here would be a build defect caught by the tests.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// PNG bytes of the loss curve for (iteration, loss) rows.
pub fn loss_plot_png(losses: &[(usize, f32)]) -> Result<Vec<u8>, String> {
    let rgb = render(losses).map_err(|e| format!("cannot draw the loss plot: {e}"))?;
    let mut png = Vec::new();
    image::RgbImage::from_raw(WIDTH, HEIGHT, rgb)
        .ok_or("plot buffer has the wrong size")?
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode the loss plot: {e}"))?;
    Ok(png)
}

fn render(losses: &[(usize, f32)]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    register_font();
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let finite: Vec<(usize, f32)> = losses.iter().copied().filter(|(_, l)| l.is_finite()).collect();
        let first = finite.first().map_or(0, |p| p.0);
        let last = finite.last().map_or(1, |p| p.0).max(first + 1);
        let top = finite.iter().map(|p| p.1).fold(0f32, f32::max).max(1e-6) * 1.05;
        let smoothed = smooth(&finite.iter().map(|p| p.1).collect::<Vec<_>>(), SMOOTHING);

        let mut chart = ChartBuilder::on(&root)
            .caption("Training loss", ("sans-serif", 28))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(first..last, 0f32..top)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc("cross-entropy loss")
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let raw_color = RGBColor(150, 180, 230);
        chart
            .draw_series(LineSeries::new(finite.iter().copied(), raw_color))?
            .label("loss per iteration")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], raw_color));
        let smooth_color = RGBColor(200, 40, 40);
        chart
            .draw_series(LineSeries::new(
                finite.iter().map(|p| p.0).zip(smoothed),
                smooth_color.stroke_width(2),
            ))?
            .label(format!("smoothed (EMA {SMOOTHING})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], smooth_color.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_with_text_and_curves() {
        let losses: Vec<(usize, f32)> = (1..=200).map(|i| (i, 1.0 / (i as f32).sqrt())).collect();
        let png = loss_plot_png(&losses).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        // Drawn: dark text/axis pixels and the red smoothed curve are both present.
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
        let red = img.pixels().filter(|p| p.0[0] > 150 && p.0[1] < 80 && p.0[2] < 80).count();
        assert!(dark > 1000, "{dark} dark pixels");
        assert!(red > 200, "{red} red pixels");
    }

    #[test]
    fn a_single_point_or_non_finite_values_do_not_break_it() {
        assert!(loss_plot_png(&[(1, 0.7)]).is_ok());
        assert!(loss_plot_png(&[(1, 0.7), (2, f32::NAN), (3, 0.5)]).is_ok());
    }
}
