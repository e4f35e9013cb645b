//! loss.png: the training loss against the iteration, raw and smoothed, and, when the run validates, the
//! validation IoU in a second panel below on the same iteration axis. Rendered in memory with plotters and a
//! bundled font (DejaVu Sans, see assets/DejaVuSans-LICENSE.txt), so no system font library is needed.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::checkpoint::ValRecord;

const WIDTH: u32 = 1000;
/// One panel; a second panel (validation) adds [`VAL_PANEL_HEIGHT`].
const HEIGHT: u32 = 600;
const VAL_PANEL_HEIGHT: u32 = 350;
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Smoothing weight of the displayed loss (an exponential moving average, debiased as TensorBoard does).
pub const SMOOTHING: f32 = 0.98;

/// The debiased exponential moving average of `values`.
pub fn smooth(values: &[f32], weight: f32) -> Vec<f32> {
    let mut acc = 0f32;
    let mut norm = 0f32;
    values
        .iter()
        .map(|&v| {
            acc = acc * weight + (1.0 - weight) * v;
            norm = norm * weight + (1.0 - weight);
            acc / norm
        })
        .collect()
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is valid; a failure here would be a build defect caught by the tests.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// PNG bytes of the loss curve for (iteration, loss) rows, without validation.
pub fn loss_plot_png(losses: &[(usize, f32)]) -> Result<Vec<u8>, String> {
    training_plot_png(losses, &[])
}

/// PNG bytes of the loss curve and, below it when there is any, the validation IoU.
pub fn training_plot_png(losses: &[(usize, f32)], validation: &[ValRecord]) -> Result<Vec<u8>, String> {
    let height = if validation.is_empty() { HEIGHT } else { HEIGHT + VAL_PANEL_HEIGHT };
    let rgb = render(losses, validation, height).map_err(|e| format!("cannot draw the loss plot: {e}"))?;
    let mut png = Vec::new();
    image::RgbImage::from_raw(WIDTH, height, rgb)
        .ok_or("plot buffer has the wrong size")?
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode the loss plot: {e}"))?;
    Ok(png)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn render(
    losses: &[(usize, f32)],
    validation: &[ValRecord],
    height: u32,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    register_font();
    let mut buffer = vec![0u8; WIDTH as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let finite: Vec<(usize, f32)> = losses.iter().copied().filter(|(_, l)| l.is_finite()).collect();
        let first =
            finite.first().map_or(0, |p| p.0).min(validation.first().map_or(usize::MAX, |r| r.iteration));
        let last =
            finite.last().map_or(1, |p| p.0).max(validation.last().map_or(0, |r| r.iteration)).max(first + 1);
        if validation.is_empty() {
            draw_loss(&root, &finite, first..last)?;
        } else {
            let (top, bottom) = root.split_vertically(HEIGHT);
            draw_loss(&top, &finite, first..last)?;
            draw_validation(&bottom, validation, first..last)?;
        }
        root.present()?;
    }
    Ok(buffer)
}

fn draw_loss(
    area: &DrawingArea<BitMapBackend, Shift>,
    finite: &[(usize, f32)],
    x: std::ops::Range<usize>,
) -> DrawResult {
    let top = finite.iter().map(|p| p.1).fold(0f32, f32::max).max(1e-6) * 1.05;
    let smoothed = smooth(&finite.iter().map(|p| p.1).collect::<Vec<_>>(), SMOOTHING);
    let mut chart = ChartBuilder::on(area)
        .caption("Training loss", ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0f32..top)?;
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
        .draw_series(LineSeries::new(finite.iter().map(|p| p.0).zip(smoothed), smooth_color.stroke_width(2)))?
        .label(format!("smoothed (EMA {SMOOTHING})"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], smooth_color.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The validation score against the iteration (the IoU, or the specificity where the validation masks hold
/// no foreground: see `ValRecord::score`), the best one marked; the y axis spans the values (not 0..1), so
/// that late improvements of a few thousandths stay visible.
fn draw_validation(
    area: &DrawingArea<BitMapBackend, Shift>,
    records: &[ValRecord],
    x: std::ops::Range<usize>,
) -> DrawResult {
    let mean = records.iter().any(|r| !r.per_class.is_empty());
    let name = if records.iter().any(|r| r.iou.is_nan()) {
        "specificity"
    } else if mean {
        "mean IoU"
    } else {
        "IoU"
    };
    let lo = records.iter().map(ValRecord::score).fold(1f64, f64::min);
    let hi = records.iter().map(ValRecord::score).fold(0f64, f64::max);
    let pad = ((hi - lo) * 0.1).max(0.005);
    let y = (lo - pad).max(0.0)..(hi + pad).min(1.0 + 1e-9);
    let best = records.iter().copied().fold(None::<ValRecord>, |b, r| match b {
        Some(b) if b.score() >= r.score() => Some(b),
        _ => Some(r),
    });
    let caption = match best {
        Some(b) => format!("Validation {name} (best {:.4} at iteration {})", b.score(), b.iteration),
        None => format!("Validation {name}"),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc(match name {
            "IoU" => "foreground IoU",
            "mean IoU" => "mean IoU over the classes",
            _ => "specificity (1 - false-positive rate)",
        })
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let color = RGBColor(30, 130, 60);
    chart.draw_series(LineSeries::new(
        records.iter().map(|r| (r.iteration, r.score())),
        color.stroke_width(2),
    ))?;
    chart.draw_series(records.iter().map(|r| Circle::new((r.iteration, r.score()), 3, color.filled())))?;
    if let Some(b) = best {
        chart.draw_series(std::iter::once(Circle::new(
            (b.iteration, b.score()),
            8,
            BLACK.stroke_width(2),
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_debiased() {
        assert_eq!(smooth(&[2.0, 2.0, 2.0], 0.9), vec![2.0, 2.0, 2.0]);
        let s = smooth(&[1.0, 0.0], 0.5);
        assert!((s[1] - 1.0 / 3.0).abs() < 1e-6);
    }

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
    fn validation_adds_a_second_panel_with_the_iou_curve() {
        let losses: Vec<(usize, f32)> = (1..=200).map(|i| (i, 1.0 / (i as f32).sqrt())).collect();
        let val: Vec<ValRecord> = (1..=4)
            .map(|k| ValRecord {
                iteration: 50 * k,
                loss: 0.3,
                iou: 0.8 + 0.01 * k as f64,
                dice: 0.9,
                accuracy: 0.9,
                false_positive_rate: 0.01,
                labelled: None,
                per_class: crate::checkpoint::PerClass::NONE,
            })
            .collect();
        let img = image::load_from_memory(&training_plot_png(&losses, &val).unwrap()).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT + VAL_PANEL_HEIGHT));
        let green = |y0: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0 == [30, 130, 60])
                .count()
        };
        assert!(green(HEIGHT, HEIGHT + VAL_PANEL_HEIGHT) > 200, "no IoU curve in the second panel");
        assert_eq!(green(0, HEIGHT), 0, "the loss panel has no validation curve");
        assert!(training_plot_png(&[(1, 0.5)], &val[..1]).is_ok());
    }

    #[test]
    fn a_single_point_or_non_finite_values_do_not_break_it() {
        assert!(loss_plot_png(&[(1, 0.7)]).is_ok());
        assert!(loss_plot_png(&[(1, 0.7), (2, f32::NAN), (3, 0.5)]).is_ok());
    }
}
