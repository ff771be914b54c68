//! Resize parity with PIL (torchvision's `Resize` on PIL images), on fixtures that
//! `tools/make_resize_fixtures.py` made with Pillow 13.0.0.

use crate::common::{fixtures, read_rgb};
use tumornet::data::decode::decode_file;
use tumornet::data::preprocess::{resize_rgb, CLASSIFIER_SIZE, SEGMENTATION_SIZE};

/// (mean, max) absolute difference in grey levels.
fn difference(a: &image::RgbImage, b: &image::RgbImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.as_raw().len() as f64, max)
}

#[test]
fn resize_matches_pil_bilinear_with_antialias() {
    let dir = fixtures().join("resize");
    for stem in ["gray_300x260", "rgb_400x300", "gray_150x180", "phantom"] {
        let source_name = if stem == "phantom" {
            format!("{stem}.jpg")
        } else {
            format!("{stem}.png")
        };
        // Decoding is part of the path a user's image takes; the phantom fixture is a JPEG.
        let source = decode_file(&dir.join(&source_name)).expect("decode source");
        for size in [CLASSIFIER_SIZE, SEGMENTATION_SIZE] {
            let ours = resize_rgb(&source, size, size).expect("resize");
            let pil = read_rgb(&dir.join(format!("{stem}.pil{size}.png")));
            let (mean, max) = difference(&ours, &pil);
            eprintln!("{source_name} → {size}: mean |Δ| {mean:.4}, max {max}");
            assert!(
                mean <= 0.5,
                "{source_name} → {size}: mean difference {mean}"
            );
            assert!(max <= 2, "{source_name} → {size}: max difference {max}");
        }
    }
}

#[test]
fn grayscale_sources_become_three_equal_channels() {
    let source = decode_file(&fixtures().join("resize").join("gray_300x260.png")).expect("decode");
    assert_eq!(source.dimensions(), (300, 260));
    assert!(source
        .pixels()
        .all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
}
