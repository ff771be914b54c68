//! The binary: exit codes and messages a user sees.

use crate::common::temp_dir;
use std::process::Command;

fn tumornet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tumornet"))
}

#[test]
fn synth_then_inspect_through_the_binary() {
    let dir = temp_dir();
    let data = dir.path().join("p");
    let out = tumornet()
        .args([
            "synth",
            "--train",
            "2",
            "--test",
            "1",
            "--min-size",
            "128",
            "--max-size",
            "160",
            "--seed",
            "3",
        ])
        .arg(&data)
        .output()
        .expect("run synth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Wrote 12 images"));

    // A second run into the same folder refuses to overwrite.
    let again = tumornet()
        .args(["synth", "--train", "1", "--test", "1"])
        .arg(&data)
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let report = dir.path().join("report");
    let out = tumornet()
        .arg("inspect")
        .arg(&data)
        .arg("--out")
        .arg(&report)
        .output()
        .expect("run inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("12 images"), "{stdout}");
    assert!(report.join("analysis.png").is_file());
}

#[test]
fn bad_input_exits_with_code_3_and_names_the_folder() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-dataset");
    let out = tumornet()
        .arg("inspect")
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dataset"));

    let out = tumornet()
        .args(["synth", "--min-size", "900", "--max-size", "300"])
        .arg(dir.path().join("x"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
