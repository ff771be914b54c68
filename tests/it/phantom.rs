//! The phantom generator: determinism, Kaggle layout, and masks consistent with classes.

use crate::common::{read_gray, temp_dir};
use tumornet::data::phantom::{generate, render, ImageId, SynthConfig, MANIFEST};
use tumornet::data::scan::{scan, ScanOptions, Split};
use tumornet::data::Class;

fn small_config(seed: u64) -> SynthConfig {
    SynthConfig {
        train_per_class: 3,
        test_per_class: 1,
        seed,
        min_size: 160,
        max_size: 256,
        jpeg_quality: 90,
        lesion_scale: 1.0,
        without_lesions: false,
    }
}

#[test]
fn same_seed_gives_byte_identical_files_and_another_seed_does_not() {
    let (a, b, c) = (temp_dir(), temp_dir(), temp_dir());
    generate(a.path(), &small_config(7), &|| {}).expect("generate a");
    generate(b.path(), &small_config(7), &|| {}).expect("generate b");
    generate(c.path(), &small_config(8), &|| {}).expect("generate c");
    let mut differs_from_other_seed = 0;
    for id in small_config(7).ids() {
        let (image, mask) = id.paths();
        for rel in [&image, &mask] {
            let bytes_a = std::fs::read(a.path().join(rel)).expect("read a");
            assert_eq!(
                bytes_a,
                std::fs::read(b.path().join(rel)).expect("read b"),
                "{}",
                rel.display()
            );
            if rel == &image && bytes_a != std::fs::read(c.path().join(rel)).expect("read c") {
                differs_from_other_seed += 1;
            }
        }
    }
    assert_eq!(differs_from_other_seed, 16);
    assert_eq!(
        std::fs::read(a.path().join(MANIFEST)).expect("manifest a"),
        std::fs::read(b.path().join(MANIFEST)).expect("manifest b")
    );
}

#[test]
fn output_is_the_kaggle_layout_with_masks_mirrored() {
    let dir = temp_dir();
    let manifest = generate(dir.path(), &small_config(1), &|| {}).expect("generate");
    assert_eq!(manifest.images.len(), 16);
    assert!(dir.path().join("Training/glioma/Tr-gl_0001.jpg").is_file());
    assert!(dir.path().join("Testing/notumor/Te-no_0001.jpg").is_file());
    assert!(dir
        .path()
        .join("masks/Training/pituitary/Tr-pi_0003.png")
        .is_file());
    let dataset = scan(dir.path(), ScanOptions { strict: true })
        .expect("scan")
        .dataset;
    assert_eq!(dataset.class_counts(Split::Training), [3, 3, 3, 3]);
    assert_eq!(dataset.class_counts(Split::Testing), [1, 1, 1, 1]);
    assert!(dataset.samples.iter().all(|s| s.mask.is_some()));
    // Grayscale content saved as an RGB JPEG, as in the Kaggle set.
    let jpeg = image::open(dir.path().join("Training/glioma/Tr-gl_0001.jpg")).expect("open");
    assert_eq!(jpeg.color(), image::ColorType::Rgb8);
    for sample in &dataset.samples {
        let size = (sample.width, sample.height);
        assert!(
            (160..=256).contains(&size.0) && size.0 == size.1,
            "{size:?}"
        );
    }
}

#[test]
fn tumour_masks_are_non_empty_and_inside_the_head_and_no_tumour_masks_are_empty() {
    let config = SynthConfig {
        min_size: 192,
        max_size: 256,
        ..small_config(3)
    };
    for class in Class::ALL {
        for number in 1..=6 {
            let id = ImageId {
                split: Split::Training,
                class,
                number,
            };
            let rendered = render(&config, id).expect("render");
            let mask_pixels = rendered.mask.pixels().filter(|p| p.0[0] == 255).count();
            assert!(rendered.mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
            assert_eq!(mask_pixels as u64, rendered.record.mask_pixels);
            if !class.is_tumour() {
                assert_eq!(mask_pixels, 0, "{id:?}");
                assert!(rendered.record.lesion.is_none());
                continue;
            }
            assert!(mask_pixels >= 20, "{id:?}: only {mask_pixels} mask pixels");
            // Inside the head: every mask pixel has tissue (above the noise floor) to its left, right and above, and
            // below unless it is tissue itself (under the sella lies the air of the sphenoid sinus); most mask
            // pixels are tissue (a necrotic core may be dark).
            let image = &rendered.image;
            let (w, h) = image.dimensions();
            let tissue = |x: u32, y: u32| image.get_pixel(x, y).0[0] > 30;
            for (x, y, m) in rendered.mask.enumerate_pixels() {
                if m.0[0] != 255 {
                    continue;
                }
                let left = (0..x).any(|xx| tissue(xx, y));
                let right = (x + 1..w).any(|xx| tissue(xx, y));
                let up = (0..y).any(|yy| tissue(x, yy));
                let down = (y + 1..h).any(|yy| tissue(x, yy));
                let enclosed = left && right && up && (down || tissue(x, y));
                assert!(
                    enclosed,
                    "{id:?}: mask pixel ({x}, {y}) is outside the head"
                );
            }
            let on_tissue = rendered
                .mask
                .enumerate_pixels()
                .filter(|(x, y, m)| m.0[0] == 255 && tissue(*x, *y))
                .count();
            assert!(
                on_tissue as f64 >= 0.8 * mask_pixels as f64,
                "{id:?}: {on_tissue}/{mask_pixels} on tissue"
            );
            // And well away from the image border.
            let (w, h) = rendered.mask.dimensions();
            let touches_border = rendered
                .mask
                .enumerate_pixels()
                .any(|(x, y, m)| m.0[0] == 255 && (x == 0 || y == 0 || x == w - 1 || y == h - 1));
            assert!(!touches_border, "{id:?}");
        }
    }
}

#[test]
fn written_masks_match_the_rendered_ones() {
    let dir = temp_dir();
    let config = small_config(5);
    let manifest = generate(dir.path(), &config, &|| {}).expect("generate");
    for record in manifest.images.iter().take(6) {
        let mask = read_gray(&dir.path().join(&record.mask));
        let count = mask.pixels().filter(|p| p.0[0] == 255).count() as u64;
        assert_eq!(count, record.mask_pixels, "{}", record.mask.display());
    }
}

#[test]
fn bad_settings_are_refused() {
    let dir = temp_dir();
    let config = SynthConfig {
        min_size: 600,
        max_size: 300,
        ..small_config(0)
    };
    assert!(generate(dir.path(), &config, &|| {}).is_err());
}

#[test]
fn without_lesions_renders_the_same_image_with_only_the_lesion_gone() {
    let with = small_config(3);
    let without = SynthConfig {
        without_lesions: true,
        ..small_config(3)
    };
    for class in [
        Class::Glioma,
        Class::Meningioma,
        Class::Pituitary,
        Class::NoTumor,
    ] {
        let id = ImageId {
            split: Split::Training,
            class,
            number: 2,
        };
        let (a, b) = (
            render(&with, id).expect("with"),
            render(&without, id).expect("without"),
        );
        assert_eq!(a.image.dimensions(), b.image.dimensions());
        assert!(
            b.mask.pixels().all(|p| p.0[0] == 0),
            "{class:?}: twin mask empty"
        );
        assert!(b.record.lesion.is_none() && b.record.mask_pixels == 0);
        if class == Class::NoTumor {
            assert_eq!(a.image, b.image, "no lesion either way: identical");
            continue;
        }
        assert!(
            a.record.mask_pixels > 0,
            "{class:?}: the original has a lesion"
        );
        // Inside the lesion the two differ strongly; far from it only by the intensity scale (the gain is set
        // from the 99.5th percentile, which a bright lesion can move) — so compare after matching the means.
        let (w, h) = a.image.dimensions();
        let near = |x: u32, y: u32| {
            let r = 24i64;
            (-r..=r).step_by(4).any(|dy| {
                (-r..=r).step_by(4).any(|dx| {
                    let (xx, yy) = (i64::from(x) + dx, i64::from(y) + dy);
                    xx >= 0
                        && yy >= 0
                        && xx < i64::from(w)
                        && yy < i64::from(h)
                        && a.mask.get_pixel(xx as u32, yy as u32).0[0] > 0
                })
            })
        };
        // Every other pixel: |Δ| inside the lesion, the (original, twin) pair away from it.
        let (mut inside, mut n_in, mut pairs) = (0.0, 0.0, Vec::new());
        for y in (0..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let (va, vb) = (
                    f64::from(a.image.get_pixel(x, y).0[0]),
                    f64::from(b.image.get_pixel(x, y).0[0]),
                );
                if a.mask.get_pixel(x, y).0[0] > 0 {
                    inside += (va - vb).abs();
                    n_in += 1.0;
                } else if !near(x, y) {
                    pairs.push((va, vb));
                }
            }
        }
        let (sum_a, sum_b) = pairs
            .iter()
            .fold((0.0, 0.0), |(sa, sb), (va, vb)| (sa + va, sb + vb));
        let scale = sum_a / f64::max(sum_b, 1.0);
        let far_total: f64 = pairs.iter().map(|(va, vb)| (va - vb * scale).abs()).sum();
        let (inside, far) = (inside / n_in, far_total / pairs.len() as f64);
        eprintln!("{class:?}: mean |Δ| inside the lesion {inside:.1}, far from it {far:.2} (scale {scale:.3})");
        assert!(
            inside > 10.0 && far < 2.0,
            "{class:?}: mean |Δ| inside {inside:.1}, far {far:.2} (scale {scale:.3})"
        );
    }
}
