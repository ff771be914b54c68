//! DICOM: any bytes written as a `.dcm` file must give frames or a MedicalError naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tumornet::data::medical::{dicom, SliceSelection};

static QUIET: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // Panics that `read_frames` catches and reports as errors are not crashes; every other panic still aborts
    // (libfuzzer-sys's hook runs for those).
    QUIET.call_once(tumornet::data::medical::quiet_guarded_panics);
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("x.dcm");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = dicom::read_frames(&path, &SliceSelection::All);
    let _ = tumornet::data::decode::decode_file(&path);
});
