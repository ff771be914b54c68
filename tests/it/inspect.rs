//! `inspect`: counts, figures, and the leakage audit finding a planted near-duplicate.

use crate::common::temp_dir;
use image::ImageFormat;
use tumornet::data::phantom::{generate, SynthConfig};
use tumornet::workflow::analysis::{analyse, InspectSettings};

#[test]
fn inspect_counts_draws_and_finds_a_planted_near_duplicate() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let config = SynthConfig {
        train_per_class: 4,
        test_per_class: 2,
        seed: 11,
        min_size: 200,
        max_size: 260,
        jpeg_quality: 90,
        lesion_scale: 1.0,
        without_lesions: false,
        anatomy: None,
    };
    generate(&data, &config, &|| {}).expect("generate");

    // Plant a near-duplicate: a training image, shrunk, brightened and re-encoded, placed in Testing.
    let original = image::open(data.join("Training/meningioma/Tr-me_0002.jpg"))
        .expect("open")
        .to_rgb8();
    let (w, h) = original.dimensions();
    let mut copy = image::imageops::resize(
        &original,
        w * 3 / 4,
        h * 3 / 4,
        image::imageops::FilterType::Triangle,
    );
    for p in copy.pixels_mut() {
        p.0 = p.0.map(|v| v.saturating_add(10));
    }
    copy.save_with_format(
        data.join("Testing/meningioma/Te-me_0099.jpg"),
        ImageFormat::Jpeg,
    )
    .expect("save");
    // And an exact copy.
    std::fs::copy(
        data.join("Training/glioma/Tr-gl_0001.jpg"),
        data.join("Testing/glioma/Te-gl_0099.jpg"),
    )
    .expect("copy");

    let out = dir.path().join("inspect");
    let args = InspectSettings {
        data: data.clone(),
        out: out.clone(),
        strict: true,
        near_threshold: 28,
        samples: 3,
    };
    let report = analyse(&args).expect("inspect");
    assert_eq!(report.total_images, 16 + 8 + 2);
    assert_eq!(report.with_masks, 24);
    let leakage = &report.leakage;
    assert_eq!(leakage.exact_pairs, 1, "{:#?}", leakage.pairs);
    assert_eq!(leakage.near_pairs, 1, "{:#?}", leakage.pairs);
    assert_eq!(leakage.test_images_involved, 2);
    let near = leakage.pairs.iter().find(|p| !p.exact).expect("near pair");
    let ends = [near.first.file_name(), near.second.file_name()];
    assert!(
        ends.contains(&Some("Te-me_0099.jpg".as_ref()))
            && ends.contains(&Some("Tr-me_0002.jpg".as_ref()))
    );
    assert!(near.distance <= 28);

    for file in ["analysis.png", "sizes.png"] {
        let figure = image::open(out.join(file)).expect(file);
        assert!(figure.width() >= 800 && figure.height() >= 500, "{file}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("inspect.json")).expect("json"))
            .expect("parse");
    assert_eq!(json["counts"]["training"]["glioma"], 4);
    assert_eq!(json["counts"]["testing"]["glioma"], 3);
    let csv = std::fs::read_to_string(out.join("duplicates.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 3, "{csv}");
}
