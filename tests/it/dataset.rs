//! Dataset discovery: split and class folder names, masks pairing, and every kind of bad file.

use crate::common::{save, temp_dir, write_jpeg};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgba};
use std::path::Path;
use tumornet::data::decode::{decode_file, DecodeError};
use tumornet::data::scan::{scan, ScanError, ScanOptions, Split, WarningKind};
use tumornet::data::Class;

#[test]
fn kaggle_sartaj_and_mixed_case_layouts_are_discovered() {
    let dir = temp_dir();
    let root = dir.path();
    // Kaggle names under "Training", SARTAJ names under "testing" (lower case), mixed case class folders.
    write_jpeg(&root.join("Training/glioma/Tr-gl_0001.jpg"), 1);
    write_jpeg(&root.join("Training/Meningioma/Tr-me_0001.jpg"), 2);
    write_jpeg(&root.join("Training/notumor/Tr-no_0001.jpg"), 3);
    write_jpeg(&root.join("Training/PITUITARY/Tr-pi_0001.JPG"), 4);
    write_jpeg(&root.join("testing/glioma_tumor/image(1).jpg"), 5);
    write_jpeg(&root.join("testing/no_tumor/image(2).jpg"), 6);
    write_jpeg(&root.join("testing/Meningioma_Tumor/image(3).jpeg"), 7);
    write_jpeg(&root.join("testing/pituitary_tumor/image(4).jpg"), 8);
    write_jpeg(&root.join("VAL/notumor/x.jpg"), 9);
    std::fs::write(root.join("README.txt"), "a dataset").expect("write");

    let report = scan(root, ScanOptions::default()).expect("scan");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let dataset = report.dataset;
    assert_eq!(
        dataset.splits(),
        vec![Split::Training, Split::Validation, Split::Testing]
    );
    assert_eq!(dataset.class_counts(Split::Training), [1, 1, 1, 1]);
    assert_eq!(dataset.class_counts(Split::Testing), [1, 1, 1, 1]);
    assert_eq!(dataset.class_counts(Split::Validation), [0, 0, 1, 0]);
    let pituitary = dataset
        .split(Split::Training)
        .find(|s| s.class == Class::Pituitary)
        .expect("pituitary");
    assert!(pituitary.path.ends_with("PITUITARY/Tr-pi_0001.JPG"));
    assert_eq!((pituitary.width, pituitary.height), (64, 48));
}

#[test]
fn class_folders_at_the_root_form_one_unsplit_set() {
    let dir = temp_dir();
    write_jpeg(&dir.path().join("glioma/a.jpg"), 1);
    write_jpeg(&dir.path().join("notumor/b.jpg"), 2);
    let dataset = scan(dir.path(), ScanOptions::default())
        .expect("scan")
        .dataset;
    assert_eq!(dataset.splits(), vec![Split::Unsplit]);
    assert_eq!(dataset.class_counts(Split::Unsplit), [1, 0, 1, 0]);
}

#[test]
fn masks_are_paired_by_path() {
    let dir = temp_dir();
    let root = dir.path();
    write_jpeg(&root.join("Training/glioma/Tr-gl_0001.jpg"), 1);
    write_jpeg(&root.join("Training/glioma/Tr-gl_0002.jpg"), 2);
    let mask = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(64, 48, Luma([0u8])));
    save(
        &root.join("masks/Training/glioma/Tr-gl_0001.png"),
        &mask,
        ImageFormat::Png,
    );
    let dataset = scan(root, ScanOptions::default()).expect("scan").dataset;
    assert_eq!(dataset.samples.len(), 2, "the masks folder is not a split");
    assert!(dataset.samples[0]
        .mask
        .as_deref()
        .is_some_and(|m| m.ends_with("masks/Training/glioma/Tr-gl_0001.png")));
    assert_eq!(dataset.samples[1].mask, None);
}

/// A dataset with one good image and one of each kind of bad file.
fn hostile_dataset(root: &Path) {
    let class = root.join("Training/glioma");
    write_jpeg(&class.join("good.jpg"), 1);
    std::fs::write(class.join("zero.jpg"), b"").expect("write");
    std::fs::write(class.join("text.jpg"), b"this is not an image\n").expect("write");
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        64,
        64,
        image::Rgb([90, 90, 90]),
    ))
    .write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
    .expect("encode");
    // Cut inside the entropy-coded scan: the header still reads, the end-of-image marker is gone.
    std::fs::write(class.join("truncated.jpg"), &jpeg[..jpeg.len() - 40]).expect("write");
    std::fs::write(class.join("half.jpg"), &jpeg[..jpeg.len() / 2]).expect("write");
    std::fs::write(class.join("notes.txt"), b"reading notes").expect("write");
    // Unusual but valid: 16-bit grayscale and RGBA PNGs.
    let deep = ImageBuffer::from_fn(32, 16, |x, _| Luma([(x * 2000) as u16]));
    save(
        &class.join("deep16.png"),
        &DynamicImage::ImageLuma16(deep),
        ImageFormat::Png,
    );
    let rgba = ImageBuffer::from_pixel(16, 16, Rgba([200u8, 100, 50, 0]));
    save(
        &class.join("alpha.png"),
        &DynamicImage::ImageRgba8(rgba),
        ImageFormat::Png,
    );
    std::fs::create_dir_all(root.join("Training/astrocytoma")).expect("mkdir");
    std::fs::create_dir_all(root.join("Testing/pituitary")).expect("mkdir");
}

#[test]
fn bad_files_become_named_warnings_and_valid_oddities_are_read() {
    let dir = temp_dir();
    let root = dir.path();
    hostile_dataset(root);
    let report = scan(root, ScanOptions::default()).expect("scan must not fail on bad files");
    let warned = |name: &str, kind: WarningKind| {
        report
            .warnings
            .iter()
            .any(|w| w.path.ends_with(name) && w.kind == kind && w.to_string().contains(name))
    };
    assert!(
        warned("zero.jpg", WarningKind::UnreadableImage),
        "{:#?}",
        report.warnings
    );
    assert!(warned("text.jpg", WarningKind::UnreadableImage));
    assert!(warned("truncated.jpg", WarningKind::UnreadableImage));
    assert!(warned("half.jpg", WarningKind::UnreadableImage));
    assert!(warned("notes.txt", WarningKind::NotAnImage));
    assert!(warned("astrocytoma", WarningKind::UnknownFolder));
    assert!(warned("pituitary", WarningKind::EmptyClassFolder));
    assert_eq!(report.warnings.len(), 7, "{:#?}", report.warnings);
    let names: Vec<String> = report
        .dataset
        .samples
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["alpha.png", "deep16.png", "good.jpg"]);

    // 16-bit is scaled to 8 bits (not clipped as PIL does); alpha is dropped.
    let deep = decode_file(&root.join("Training/glioma/deep16.png")).expect("16-bit PNG");
    assert_eq!(
        deep.get_pixel(31, 0).0,
        [241, 241, 241],
        "62000 / 257 rounds to 241"
    );
    let alpha = decode_file(&root.join("Training/glioma/alpha.png")).expect("RGBA PNG");
    assert_eq!(alpha.get_pixel(3, 3).0, [200, 100, 50]);

    // Each bad file's decode error names it.
    for (name, want) in [
        ("zero.jpg", "empty"),
        ("text.jpg", "not a supported image"),
        ("truncated.jpg", "cut short"),
        ("half.jpg", "truncated"),
    ] {
        let error = decode_file(&root.join("Training/glioma").join(name)).expect_err(name);
        let message = error.to_string();
        assert!(
            message.contains(name) && message.contains(want),
            "{message}"
        );
        assert!(matches!(
            error,
            DecodeError::Empty { .. }
                | DecodeError::UnknownFormat { .. }
                | DecodeError::Corrupt { .. }
        ));
    }
}

#[test]
fn strict_mode_turns_the_first_warning_into_an_error() {
    let dir = temp_dir();
    hostile_dataset(dir.path());
    match scan(dir.path(), ScanOptions { strict: true }) {
        Err(ScanError::Strict { count, first }) => {
            assert_eq!(count, 7);
            assert!(first.path.starts_with(dir.path()));
        }
        other => panic!("expected a strict error, got {other:?}"),
    }
}

#[test]
fn missing_or_classless_folders_are_clear_errors() {
    let dir = temp_dir();
    let missing = dir.path().join("nowhere");
    let error = scan(&missing, ScanOptions::default()).expect_err("missing folder");
    assert!(error.to_string().contains("nowhere"));
    std::fs::create_dir_all(dir.path().join("photos")).expect("mkdir");
    assert!(matches!(
        scan(dir.path(), ScanOptions::default()),
        Err(ScanError::NoClassFolders(_))
    ));
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let dir = temp_dir();
    // A PNG header claiming 20000×20000 pixels with (almost) no data behind it.
    let mut png = Vec::new();
    png.extend_from_slice(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    for chunk in [&b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01"[..], &b"IEND"[..]] {
        png.extend_from_slice(&(chunk.len() as u32 - 4).to_be_bytes());
        png.extend_from_slice(chunk);
        png.extend_from_slice(&crc32(chunk).to_be_bytes());
    }
    let path = dir.path().join("bomb.png");
    std::fs::write(&path, png).expect("write");
    match decode_file(&path) {
        Err(DecodeError::TooLarge {
            width: 20000,
            height: 20000,
            ..
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
