#!/usr/bin/env python3
"""Dev-time reference for DICOM and NIfTI input: copies small public test files into tests/fixtures/medical/ and
writes what pydicom 3 and nibabel read from them (reference.json, *.f32), for tests/it/medical.rs.

DICOM: pydicom's test files (MIT; see tests/fixtures/medical/NOTICE): MR_small in five encodings (explicit/implicit
little endian, explicit big endian, RLE, JPEG 2000 lossless) plus its JPEG-LS copy and JPEG-lossy.dcm (12-bit extended JPEG) (unsupported, for the errors),
CT_small (rescale slope/intercept), rtdose (15 frames), and MR_small rewritten as MONOCHROME1. Values are
pydicom's pixel_array after apply_modality_lut.
NIfTI: nibabel's anatomical.nii (big-endian int16, MIT), a 4-D volume made here, and a cut of the Colin27 T1 in
assets/ (downsampled by 4, stored LPS with an sform) to check orientation. Values are nibabel's
as_closest_canonical(...) data, laid out as tumornet displays slices (axial: data[::-1, ::-1, k].T, coronal:
data[::-1, j, ::-1].T, sagittal: data[i, ::-1, ::-1].T).

Usage: /opt/ref/bin/python tools/medical_reference.py   (needs pydicom, nibabel, numpy)
"""
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

root = os.path.join(os.path.dirname(__file__), "..")
out = os.path.join(root, "tests", "fixtures", "medical")
os.makedirs(out, exist_ok=True)
ref = {"pydicom": pydicom.__version__, "nibabel": nib.__version__, "dicom": {}, "nifti": {}}


def f32(name, array):
    np.asarray(array, dtype="<f4").tofile(os.path.join(out, name))


for name in ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
             "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "CT_small.dcm", "rtdose.dcm",
             "JPEG-lossy.dcm"]:
    shutil.copy(get_testdata_file(name), os.path.join(out, name))

ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
ds.PhotometricInterpretation = "MONOCHROME1"
ds.save_as(os.path.join(out, "MR_small_monochrome1.dcm"))

for name in ["MR_small.dcm", "CT_small.dcm", "rtdose.dcm", "MR_small_monochrome1.dcm"]:
    ds = pydicom.dcmread(os.path.join(out, name))
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    frames = values if int(ds.get("NumberOfFrames", 1) or 1) > 1 else values[None]
    wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
    first = lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else (None if v is None else float(v))
    ref["dicom"][name] = {
        "rows": int(ds.Rows), "columns": int(ds.Columns), "frames": int(frames.shape[0]),
        "photometric": str(ds.PhotometricInterpretation), "window": [first(wc), first(ww)] if wc is not None else None,
        "frame_sums": [float(f.sum()) for f in frames], "min": float(values.min()), "max": float(values.max()),
    }
    f32(name.replace(".dcm", ".frame0.f32"), frames[0])

# NIfTI: nibabel's anatomical.nii.
shutil.copy(os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii"),
            os.path.join(out, "anatomical.nii"))

# A 4-D volume (two 3-D volumes, LPS qform only).
rng = np.random.default_rng(0)
vol4 = rng.integers(0, 1000, size=(6, 5, 4, 2)).astype(np.int16)
aff = np.diag([-2.0, -2.0, 3.0, 1.0])
img4 = nib.Nifti1Image(vol4, aff)
img4.set_sform(None, code=0)
img4.set_qform(aff, code=1)
nib.save(img4, os.path.join(out, "four_d.nii.gz"))

# Colin27 cut: every 4th voxel, stored flipped to LPS with an sform.
colin = nib.load(os.path.join(root, "assets", "ch2.nii.gz"))
small = np.asarray(colin.dataobj)[::4, ::4, ::4].astype(np.int16)
a = colin.affine.copy()
a[:3, :3] *= 4
flip = np.diag([-1.0, -1.0, 1.0, 1.0])
shape = np.array(small.shape)
# Reverse the first two voxel axes and pick an affine that keeps every voxel at its world position.
lps_data = small[::-1, ::-1, :].copy()
to_old = np.eye(4)
to_old[0, 0], to_old[1, 1] = -1, -1
to_old[0, 3], to_old[1, 3] = shape[0] - 1, shape[1] - 1
lps_aff = a @ to_old
cut = nib.Nifti1Image(lps_data, lps_aff)
cut.set_qform(None, code=0)
cut.set_sform(lps_aff, code=2)
nib.save(cut, os.path.join(out, "colin27_lps.nii.gz"))

for name, volume in [("anatomical.nii", 0), ("four_d.nii.gz", 1), ("colin27_lps.nii.gz", 0)]:
    img = nib.load(os.path.join(out, name))
    if len(img.shape) == 4:
        img = img.slicer[..., volume]
    canon = nib.as_closest_canonical(img)
    data = canon.get_fdata(dtype=np.float64)
    nr, na, ns = data.shape
    k, j, i = ns // 2, na // 2, nr // 2
    base = name.split(".")[0]
    f32(f"{base}.axial.f32", data[::-1, ::-1, k].T)
    f32(f"{base}.coronal.f32", data[::-1, j, ::-1].T)
    f32(f"{base}.sagittal.f32", data[i, ::-1, ::-1].T)
    ref["nifti"][name] = {"volume": volume, "canonical_shape": list(data.shape), "axial": k, "coronal": j,
                          "sagittal": i, "axcodes": "".join(nib.aff2axcodes(nib.load(os.path.join(out, name)).affine)),
                          "affine": nib.load(os.path.join(out, name)).affine[:3].tolist()}

with open(os.path.join(out, "reference.json"), "w") as fh:
    json.dump(ref, fh, indent=1)
print(json.dumps(ref, indent=1)[:2000])
