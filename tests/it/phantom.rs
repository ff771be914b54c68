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
        anatomy: None,
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

/// Colin27's voxel-to-world affine, as nibabel reads `assets/ch2.nii.gz` (sform, 1 mm, RAS).
const COLIN27_AFFINE: [[f64; 4]; 3] = [
    [1.0, 0.0, 0.0, -90.0],
    [0.0, 1.0, 0.0, -125.0],
    [0.0, 0.0, 1.0, -71.0],
];

#[test]
fn volumes_carry_their_true_masks_in_the_anatomy_grid() {
    use tumornet::data::medical::nifti::read_with_affine;
    use tumornet::data::phantom::{generate_volumes, VolumeConfig, VOLUME_MANIFEST};
    let dir = temp_dir();
    let config = VolumeConfig {
        per_class: 1,
        seed: 5,
        lesion_scale: 1.0,
        anatomy: None,
    };
    let manifest = generate_volumes(dir.path(), &config, &|| {}).expect("volumes");
    assert!(dir.path().join(VOLUME_MANIFEST).is_file());
    assert_eq!(manifest.volumes.len(), 4);
    for record in &manifest.volumes {
        let (image, affine) = read_with_affine(&dir.path().join(&record.image)).expect("image");
        let (truth, truth_affine) =
            read_with_affine(&dir.path().join(&record.truth)).expect("truth");
        assert_eq!(image.shape(), &[181, 217, 181]);
        assert_eq!(truth.shape(), image.shape());
        assert_eq!(affine, COLIN27_AFFINE, "{}", record.image.display());
        assert_eq!(truth_affine, COLIN27_AFFINE);
        let inside: Vec<[usize; 3]> = truth
            .indexed_iter()
            .filter(|(_, v)| **v > 0.0)
            .map(|((x, y, z), _)| [x, y, z])
            .collect();
        assert_eq!(inside.len() as u64, record.tumour_voxels);
        if record.class == Class::NoTumor {
            assert!(inside.is_empty() && record.lesion.is_none());
            continue;
        }
        // The lesion is cut by its centre slice and ends within its semi-axis along z.
        let centre = record.centre_slice.expect("centre slice");
        let semi = record.semi_axis_mm.expect("semi-axis");
        assert!(inside.iter().any(|v| v[2] == centre), "{:?}", record.class);
        assert!(
            inside
                .iter()
                .all(|v| (v[2] as f32 - centre as f32).abs() <= semi + 1.0),
            "{:?}",
            record.class
        );
        // Lesion voxels are not background: the volume is painted where the mask says.
        let mean_inside = inside.iter().map(|v| image[*v]).sum::<f32>() / inside.len() as f32;
        assert!(mean_inside > 20.0, "{:?}: {mean_inside}", record.class);
    }
    // The DICOM series of a volume reads as that volume: the same slices pixel for pixel, on the same grid.
    let record = &manifest.volumes[0];
    let options = tumornet::data::medical::VolumeOptions {
        plane: tumornet::data::medical::Plane::Coronal,
        slices: "100:102".parse().expect("slices"),
        volume: 0,
        dicom_series: true,
    };
    let files = tumornet::data::inputs::collect_inputs(&[dir.path().join(&record.dicom)])
        .expect("series files");
    assert_eq!(files.len(), 181);
    let from_series: Vec<_> = tumornet::data::inputs::expand(&files, &options)
        .into_iter()
        .map(|s| s.expect("series slice"))
        .collect();
    let from_nifti = tumornet::data::medical::read_slices(
        &dir.path().join(&record.image),
        tumornet::data::medical::MedicalKind::Nifti,
        &options,
    )
    .expect("nifti slices");
    assert_eq!(from_series.len(), 3);
    for (series, nifti) in from_series.iter().zip(&from_nifti) {
        assert_eq!(series.position, nifti.position);
        assert_eq!(series.path, dir.path().join(&record.dicom));
        assert_eq!(
            series.load().expect("series image"),
            tumornet::data::medical::gray_to_rgb(&nifti.image)
        );
        let (a, b) = (
            series.geometry.as_ref().expect("series geometry"),
            nifti.geometry.as_ref().expect("nifti geometry"),
        );
        // Another voxel order (columns run to the patient's left, rows to the back), the same grid.
        assert_ne!(a.header.srow_x, b.header.srow_x);
        assert_eq!(a.canonical_affine(), b.canonical_affine());
    }

    // The same seed makes the same volume.
    let again = tumornet::data::phantom::render_volume(&config, Class::Glioma, 1).expect("again");
    let (first, _) = read_with_affine(&dir.path().join(&manifest.volumes[0].image)).expect("first");
    assert!(first
        .iter()
        .zip(again.image.iter())
        .all(|(a, b)| *a == f32::from(*b)));
}

#[test]
fn an_mni_anatomy_is_resampled_through_its_affine() {
    use tumornet::data::phantom::Anatomy;
    let colin = Anatomy::colin27().expect("colin27");
    // Colin27 itself, stored mirrored left-right with the affine that says so: read back onto the same grid.
    let mut geometry = Anatomy::geometry().expect("geometry");
    geometry.header.srow_x = [-1.0, 0.0, 0.0, 90.0];
    geometry.header.qform_code = 0;
    let [nx, ny, nz] = colin.dims();
    let flipped =
        ndarray::Array3::from_shape_fn((nx, ny, nz), |(x, y, z)| colin.t1_at(nx - 1 - x, y, z));
    let dir = temp_dir();
    let path = dir.path().join("mirrored.nii.gz");
    geometry.write_labels(&path, &flipped).expect("write");
    let anatomy = Anatomy::from_mni(&path).expect("from_mni");
    let mut off = 0usize;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let d = i16::from(anatomy.t1_at(x, y, z)) - i16::from(colin.t1_at(x, y, z));
                assert!(d.abs() <= 1, "voxel {x},{y},{z}: {d}");
                off += usize::from(d != 0);
            }
        }
    }
    // The quantile map of an image onto itself moves few grey levels by one (rounding at the knots).
    assert!(off * 100 < nx * ny * nz, "{off} voxels off by one");
    // A file that is not a head in MNI space is refused with its name.
    let flat = dir.path().join("flat.nii.gz");
    geometry
        .write_labels(&flat, &ndarray::Array3::zeros((nx, ny, nz)))
        .expect("write flat");
    let error = Anatomy::from_mni(&flat).err().expect("refused").to_string();
    assert!(error.contains("flat.nii.gz"), "{error}");
}
