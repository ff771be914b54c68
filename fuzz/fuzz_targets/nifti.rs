//! NIfTI: any bytes written as a `.nii` file must give a canonical volume (and its slices) or a MedicalError.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tumornet::data::medical::{nifti, Plane};

static QUIET: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // Panics that the reader catches and reports as errors are not crashes; every other panic still aborts.
    QUIET.call_once(tumornet::data::medical::quiet_guarded_panics);
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("x.nii");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(volume) = nifti::read_canonical(&path, 0) {
        for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
            let _ = volume.slice(plane, 0);
        }
    }
});
