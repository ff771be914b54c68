//! Helpers shared by the integration tests.

use image::{GrayImage, RgbImage};
use std::path::{Path, PathBuf};

/// The repository's fixture folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// The `tumornet` binary under test.
pub fn tumornet() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_tumornet"))
}

/// A run folder `dir/run` made by `tumornet weights import` from a formula checkpoint with `classes` outputs
/// (deterministic weights, no training); returns it and what the import printed.
pub fn import_checkpoint(dir: &Path, classes: usize) -> (PathBuf, std::process::Output) {
    let weights = dir.join(format!("formula-{classes}.safetensors"));
    crate::model::write_checkpoint(&weights, classes, |_| {});
    let run = dir.join("run");
    let out = tumornet()
        .args(["weights", "import"])
        .arg(&weights)
        .arg("--out")
        .arg(&run)
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (run, out)
}

/// A 4-class run for tests of the commands that need a model.
pub fn import_formula_run(dir: &Path) -> PathBuf {
    import_checkpoint(dir, 4).0
}

/// A small phantom set in `dir` (128–160 px images, `train`/`test` per class).
pub fn small_phantom(dir: &Path, train: usize, test: usize, seed: u64) {
    let config = tumornet::data::phantom::SynthConfig {
        train_per_class: train,
        test_per_class: test,
        seed,
        min_size: 128,
        max_size: 160,
        jpeg_quality: 90,
        lesion_scale: 1.0,
        without_lesions: false,
        anatomy: None,
    };
    tumornet::data::phantom::generate(dir, &config, &|| {}).expect("phantom");
}

/// A fresh temporary folder, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

/// Write a small grayscale JPEG with some structure (a bright disc whose place depends on `seed`).
pub fn write_jpeg(path: &Path, seed: u32) {
    let image = RgbImage::from_fn(64, 48, |x, y| {
        let (dx, dy) = (x as i32 - 16 - seed as i32 % 30, y as i32 - 24);
        let v = if dx * dx + dy * dy < 90 {
            220
        } else {
            ((x * 3 + y * 5 + seed * 7) % 60) as u8
        };
        image::Rgb([v, v, v])
    });
    save(
        path,
        &image::DynamicImage::ImageRgb8(image),
        image::ImageFormat::Jpeg,
    );
}

/// Save any image, creating parent folders.
pub fn save(path: &Path, image: &image::DynamicImage, format: image::ImageFormat) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create folders");
    image.save_with_format(path, format).expect("save image");
}

/// Read a PNG as RGB.
pub fn read_rgb(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// Read a PNG as grayscale.
pub fn read_gray(path: &Path) -> GrayImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8()
}

/// A dataset whose class is told by the images' grey level alone (40-pixel images with mild noise), in the
/// Kaggle layout: a task any working training loop learns.
pub fn brightness_dataset(root: &std::path::Path, train: usize, test: usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for (split, count) in [("Training", train), ("Testing", test)] {
        for (c, class) in ["glioma", "meningioma", "notumor", "pituitary"]
            .iter()
            .enumerate()
        {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).expect("folder");
            for i in 0..count {
                let level = 30 + 60 * c as i32;
                let image = image::GrayImage::from_fn(40, 40, |_, _| {
                    image::Luma([(level + rng.random_range(-10..=10)) as u8])
                });
                image.save(dir.join(format!("{i}.png"))).expect("png");
            }
        }
    }
}

/// Little-endian IEEE half-precision values as f32 (exact: every f16 is an f32).
pub fn f16_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| {
            let h = u16::from_le_bytes([c[0], c[1]]);
            let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
            let exponent = i32::from((h >> 10) & 0x1f);
            let mantissa = f32::from(h & 0x3ff);
            sign * match exponent {
                0 => mantissa * 2f32.powi(-24),
                e => (1.0 + mantissa / 1024.0) * 2f32.powi(e - 15),
            }
        })
        .collect()
}
