//! NIfTI: any bytes written as a `.nii` file must give a canonical volume (and its slices) or a MedicalError.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tumornet::data::medical::{nifti, Plane};

fuzz_target!(|data: &[u8]| {
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
