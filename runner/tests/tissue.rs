//! `--tissue auto|FILE` and `--roi`: on every pixel of the scope the probabilities equal a full pass's,
//! elsewhere they are 0 and the mask background; windows away from the tissue are not computed; the
//! detected tissue covers the islands drawn.

use std::path::Path;
use std::process::{Command, Output};

use imaging::annotations::raster::rasterise;
use imaging::annotations::Polygon;
use imaging::rect::Rect;

fn predict(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .args(["predict", "--model", "model.onnx", "--threads", "2", "--quiet"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_npy(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn gray(path: &Path) -> (Vec<u8>, usize, usize) {
    let image = image::open(path).unwrap().to_luma8();
    let (w, h) = image.dimensions();
    (image.into_raw(), w as usize, h as usize)
}

/// Stained islands on off-white, noisy glass: the image and the islands.
fn slide(dir: &Path, w: usize, h: usize) -> Vec<bool> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("models/model.onnx"), dir.join("model.onnx")).unwrap();
    let conifer = image::open(root.join("data/conifer/image.png")).unwrap().to_rgb8();
    let islands = [(150.0, 130.0, 110.0, 80.0), (520.0, 330.0, 90.0, 120.0)];
    let mut state = 1u64;
    let mut rgb = Vec::with_capacity(w * h * 3);
    let mut truth = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let inside = islands.iter().any(|&(cx, cy, rx, ry)| {
                ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2) <= 1.0
            });
            truth.push(inside);
            if inside {
                // H&E-like: eosin-pink stroma with the conifer's texture, haematoxylin-purple nuclei.
                let p = conifer
                    .get_pixel((x % conifer.width() as usize) as u32, (y % conifer.height() as usize) as u32);
                let nucleus = (x / 7 + y / 5) % 4 == 0 && (x % 7) < 4 && (y % 5) < 3;
                let tint: [i32; 3] = if nucleus { [110, 50, 150] } else { [230, 140, 195] };
                for (c, t) in p.0.iter().zip(tint) {
                    rgb.push(((*c as i32 + 3 * t) / 4) as u8);
                }
            } else {
                for base in [238i32, 236, 240] {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    rgb.push((base + ((state >> 33) % 11) as i32 - 5) as u8);
                }
            }
        }
    }
    image::save_buffer(dir.join("slide.png"), &rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .unwrap();
    truth
}

/// Checks the limited run against the full one: equal inside `inside`, 0 and background outside.
fn check(dir: &Path, limited: &str, mask: &str, inside: &[u8]) {
    let full = read_npy(&dir.join("full.npy"));
    let part = read_npy(&dir.join(limited));
    let (classes, _, _) = gray(&dir.join(mask));
    let (full_classes, _, _) = gray(&dir.join("full.png"));
    assert_eq!(full.len(), inside.len());
    for i in 0..full.len() {
        if inside[i] == 1 {
            assert_eq!(part[i], full[i], "pixel {i} inside");
            assert_eq!(classes[i], full_classes[i], "pixel {i} inside");
        } else {
            assert_eq!((part[i], classes[i]), (0.0, 0), "pixel {i} outside");
        }
    }
}

#[test]
fn auto_tissue_is_exact_on_the_tissue_and_skips_the_glass() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (700, 480);
    let truth = slide(dir.path(), w, h);
    let tile = ["--tile", "64"];
    let full = ok(&predict(
        dir.path(),
        &[&["--image", "slide.png", "--output", "full.png", "--probabilities", "full.npy"][..], &tile[..]]
            .concat(),
    ));
    let args = [
        "--image",
        "slide.png",
        "--output",
        "auto.png",
        "--probabilities",
        "auto.npy",
        "--tissue",
        "auto",
        "--tissue-output",
        "tissue.png",
    ];
    let stdout = ok(&predict(dir.path(), &[&args[..], &tile[..]].concat()));
    assert!(stdout.contains("tissue: ") && stdout.contains("a streamed reduction"), "{stdout}");
    let count = |text: &str| -> usize {
        let s = &text[text.find("predicted ").unwrap()..];
        s[s.find(": ").unwrap() + 2..].split(' ').next().unwrap().parse().unwrap()
    };
    let (all, some) = (count(&full), count(&stdout));
    assert!(some < all * 3 / 4, "{some} of {all} windows");
    // The mask written: one pixel per 32 x 32 block of this single-level image.
    let (mask, mw, mh) = gray(&dir.path().join("tissue.png"));
    assert_eq!((mw, mh), (w.div_ceil(32), h.div_ceil(32)));
    let inside: Vec<u8> =
        (0..w * h).map(|i| u8::from(mask[(i / w / 32) * mw + (i % w) / 32] > 127)).collect();
    let covered = truth.iter().zip(&inside).filter(|&(&t, &m)| t && m == 1).count();
    let tissue = truth.iter().filter(|&&t| t).count();
    assert!(covered as f64 >= 0.99 * tissue as f64, "{covered} of {tissue} tissue pixels detected");
    assert!(inside.iter().filter(|&&m| m == 1).count() < w * h * 3 / 4, "glass left out");
    check(dir.path(), "auto.npy", "auto.png", &inside);
}

#[test]
fn a_user_mask_and_annotations_bound_the_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (300, 220);
    slide(dir.path(), w, h);
    let tile = ["--tile", "64"];
    ok(&predict(
        dir.path(),
        &[&["--image", "slide.png", "--output", "full.png", "--probabilities", "full.npy"][..], &tile[..]]
            .concat(),
    ));
    // A mask of another size: 7 x 5 pixels stretched over the image.
    let user: Vec<u8> = (0..35).map(|i| if (i % 7 + i / 7) % 3 == 0 { 255 } else { 0 }).collect();
    image::save_buffer(dir.path().join("user.png"), &user, 7, 5, image::ExtendedColorType::L8).unwrap();
    let args =
        ["--image", "slide.png", "--output", "u.png", "--probabilities", "u.npy", "--tissue", "user.png"];
    ok(&predict(dir.path(), &[&args[..], &tile[..]].concat()));
    let column = |x: usize| (((x as f64 + 0.5) / (w as f64 / 7.0)).floor() as usize).min(6);
    let row = |y: usize| (((y as f64 + 0.5) / (h as f64 / 5.0)).floor() as usize).min(4);
    let inside: Vec<u8> = (0..w * h).map(|i| u8::from(user[row(i / w) * 7 + column(i % w)] > 127)).collect();
    check(dir.path(), "u.npy", "u.png", &inside);

    // QuPath annotations: a triangle of class Tumor and a square of another class.
    let geojson = serde_json::json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[20.5, 10.0], [250.0, 60.5], [90.0, 200.0], [20.5, 10.0]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[200.0, 150.0], [290.0, 150.0], [290.0, 210.0], [200.0, 210.0], [200.0, 150.0]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Stroma"}}}]});
    std::fs::write(dir.path().join("roi.geojson"), geojson.to_string()).unwrap();
    let args = [
        "--image",
        "slide.png",
        "--output",
        "r.png",
        "--probabilities",
        "r.npy",
        "--roi",
        "roi.geojson",
        "--roi-class",
        "Tumor",
    ];
    ok(&predict(dir.path(), &[&args[..], &tile[..]].concat()));
    let triangle = Polygon { outer: vec![(20.5, 10.0), (250.0, 60.5), (90.0, 200.0)], holes: vec![] };
    let window = Rect { left: 0, top: 0, width: w, height: h };
    let inside = rasterise([&triangle], window, (1.0, 1.0));
    check(dir.path(), "r.npy", "r.png", &inside);
    // A class the file lacks is refused, naming the classes it has.
    let out = predict(
        dir.path(),
        &["--image", "slide.png", "--output", "x.png", "--roi", "roi.geojson", "--roi-class", "Fat"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--roi-class") && stderr.contains("\"Stroma\""), "{stderr}");
}
