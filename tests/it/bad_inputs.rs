//! The bad-input corpus: odd but valid files are read, broken ones are named and skipped, nothing panics, and
//! everything else is still processed. Small odd files come from tools/make_bad_inputs.py
//! (tests/fixtures/bad); truncations, empty files, links and odd names are made here from good files.

use crate::common::{fixtures, import_formula_run, small_phantom, temp_dir, tumornet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Fill `dir` with the corpus; returns (names that must be read, names that must be refused).
fn corpus(dir: &Path, good_jpeg: &Path) -> (Vec<String>, Vec<String>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let jpeg = std::fs::read(good_jpeg).expect("jpeg");
    let image = image::load_from_memory(&jpeg).expect("decode");
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let medical = fixtures().join("medical");
    let dicom = std::fs::read(medical.join("MR_small.dcm")).expect("dcm");
    let nifti = std::fs::read(medical.join("colin27_lps.nii.gz")).expect("nii");
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).expect("write");

    write("good.jpg", &jpeg);
    let odd_name = std::ffi::OsStr::from_bytes(b"odd-\xff-name.jpg");
    std::fs::write(dir.join(odd_name), &jpeg).expect("non-UTF-8 name");
    for name in [
        "cmyk.jpg",
        "palette.png",
        "gray16.png",
        "animated.gif",
        "one_by_one.png",
        "bomb.png",
        "rle_overrun.dcm",
        "size_mismatch.nii",
        "length_bomb.dcm",
    ] {
        std::fs::copy(fixtures().join("bad").join(name), dir.join(name)).expect("copy");
    }
    write("zero.jpg", b"");
    write("text.jpg", b"this is a text file with a .jpg name\n");
    write("truncated.jpg", &jpeg[..jpeg.len() / 2]);
    write("truncated.png", &png[..png.len() / 2]);
    write("truncated.dcm", &dicom[..dicom.len() / 2]);
    write("truncated.nii.gz", &nifti[..nifti.len() / 3]);
    std::os::unix::fs::symlink(dir.join("no-such-file.jpg"), dir.join("dangling.jpg"))
        .expect("symlink");
    std::os::unix::fs::symlink(dir, dir.join("loop")).expect("loop");
    let good = [
        "good.jpg",
        "odd-",
        "cmyk.jpg",
        "palette.png",
        "gray16.png",
        "animated.gif",
        "one_by_one.png",
    ];
    let bad = [
        "zero.jpg",
        "text.jpg",
        "truncated.jpg",
        "truncated.png",
        "truncated.dcm",
        "truncated.nii.gz",
        "bomb.png",
        "dangling.jpg",
        "rle_overrun.dcm",
        "size_mismatch.nii",
        "length_bomb.dcm",
    ];
    (
        good.iter().map(|s| s.to_string()).collect(),
        bad.iter().map(|s| s.to_string()).collect(),
    )
}

fn phantom(dir: &Path) -> PathBuf {
    small_phantom(dir, 1, 1, 5);
    dir.join("Testing/glioma/Te-gl_0001.jpg")
}

#[test]
fn predict_and_cam_read_what_they_can_and_name_the_rest() {
    let tmp = temp_dir();
    let good_jpeg = phantom(&tmp.path().join("phantom"));
    let run = import_formula_run(tmp.path());
    let dir = tmp.path().join("corpus");
    let (good, bad) = corpus(&dir, &good_jpeg);

    let out = tumornet()
        .arg("predict")
        .arg(&run)
        .arg(&dir)
        .output()
        .expect("predict");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        good.len(),
        "each good file once (the loop not followed): {stdout}"
    );
    for name in &good {
        assert!(
            stdout.contains(name.as_str()),
            "{name} not predicted: {stdout}\n{stderr}"
        );
    }
    for name in &bad {
        assert!(stderr.contains(name.as_str()), "{name} not named: {stderr}");
        assert!(
            !stdout.contains(name.as_str()),
            "{name} predicted: {stdout}"
        );
    }
    assert!(
        stderr.contains("exceeds the limit"),
        "the bomb must be refused by its header: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} of {} image(s)",
            bad.len(),
            bad.len() + good.len()
        )),
        "{stderr}"
    );

    let cams = tmp.path().join("cams");
    let out = tumornet()
        .arg("cam")
        .arg(&run)
        .arg(&dir)
        .arg("--out")
        .arg(&cams)
        .output()
        .expect("cam");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for name in &bad {
        assert!(
            stderr.contains(name.as_str()),
            "{name} not named by cam: {stderr}"
        );
    }
    let overlays = std::fs::read_dir(cams.join("overlays"))
        .expect("overlays")
        .count();
    assert_eq!(overlays, good.len());
}

#[test]
fn inspect_warns_about_each_bad_file_and_strict_refuses() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let good_jpeg = phantom(&data);
    let (good, bad) = corpus(&data.join("Training/glioma/corpus"), &good_jpeg);
    std::fs::create_dir_all(data.join("Training/pituitary_tumor")).expect("empty class");
    for entry in std::fs::read_dir(data.join("Training/pituitary")).expect("pituitary") {
        std::fs::remove_file(entry.expect("entry").path()).expect("empty it");
    }
    let out = tumornet()
        .arg("inspect")
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("inspect"))
        .output()
        .expect("inspect");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for name in &bad {
        assert!(
            stderr.contains(name.as_str()),
            "{name} not warned about: {stderr}"
        );
    }
    assert!(
        stderr.contains("holds no images"),
        "the empty class folder: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("inspect/inspect.json")).expect("inspect.json"),
    )
    .expect("json");
    // The phantom's training glioma image, the corpus's good ones, and truncated.png, whose header is sound (so
    // the scan counts it) and whose data is not (so inspect lists it as undecodable); the emptied class: none.
    assert_eq!(
        report["counts"]["training"]["glioma"],
        1 + good.len() + 1,
        "{report}"
    );
    let undecodable = report["undecodable"].to_string();
    assert!(undecodable.contains("truncated.png"), "{undecodable}");
    // The corpus's good.jpg is a copy of the phantom's test image: the leakage audit finds it.
    assert!(
        report["leakage"]["exact_pairs"].as_u64().expect("pairs") >= 1,
        "{report}"
    );
    assert_eq!(report["counts"]["training"]["pituitary"], 0, "{report}");
    let out = tumornet()
        .arg("inspect")
        .arg(&data)
        .arg("--strict")
        .arg("--out")
        .arg(tmp.path().join("inspect2"))
        .output()
        .expect("inspect");
    assert_eq!(out.status.code(), Some(3));
}
