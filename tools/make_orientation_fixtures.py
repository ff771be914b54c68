#!/usr/bin/env python3
"""Dev-time: NIfTI volumes in four orientations for the volume-output alignment test (tests/it/medical.rs).

Each volume's value at voxel (i, j, k) is its own index i + nx·(j + ny·k), so a slice says which voxel each of its
pixels came from. Writes, under tests/fixtures/medical/:
  orient_las.nii.gz          LAS, sform and qform both set (code 1)
  orient_lps_qform.nii.gz    LPS, qform only (sform code 0)
  orient_lps_sform.nii.gz    LPS, sform only (qform code 0)
  orient_slp_sform.nii.gz    voxel axes along S, L, P (a permutation), slightly oblique, sform only
  orientation.json           per file: nibabel's axis codes, and per plane the middle slice of
                             nibabel.as_closest_canonical laid out as TumorNet shows it (rows reversed second RAS+
                             axis, columns reversed first), i.e. the voxel index under each displayed pixel
Run: /opt/ref/bin/python tools/make_orientation_fixtures.py  (nibabel, numpy)
"""
import json
from pathlib import Path

import nibabel as nib
import numpy as np

OUT = Path("tests/fixtures/medical")
SHAPE = (6, 7, 5)


def volume():
    i, j, k = np.indices(SHAPE)
    return (i + SHAPE[0] * (j + SHAPE[1] * k)).astype(np.float32)


def save(name, affine, sform, qform):
    img = nib.Nifti1Image(volume(), affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine if sform else None, code=1 if sform else 0)
    img.set_qform(affine if qform else None, code=1 if qform else 0)
    nib.save(img, OUT / name)


def displayed(canonical, plane):
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    index = canonical.shape[axis] // 2
    cut = np.take(canonical, index, axis=axis)  # [a, b]
    view = cut.T[::-1, ::-1]  # rows: b reversed, columns: a reversed
    return index, view.astype(int).tolist()


def main():
    theta = np.deg2rad(8)
    oblique = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    permuted = np.array([[0.0, -1.1, 0.0], [0.0, 0.0, -0.9], [1.3, 0.0, 0.0]])
    files = {
        "orient_las.nii.gz": (np.diag([-2.0, 1.5, 3.0]), True, True),
        "orient_lps_qform.nii.gz": (np.diag([-1.0, -1.2, 1.5]), False, True),
        "orient_lps_sform.nii.gz": (np.diag([-1.0, -1.2, 1.5]), True, False),
        "orient_slp_sform.nii.gz": (oblique @ permuted, True, False),
    }
    reference = {}
    for name, (linear, sform, qform) in files.items():
        affine = np.eye(4)
        affine[:3, :3] = linear
        affine[:3, 3] = [10.0, -20.0, 5.0]
        save(name, affine, sform, qform)
        img = nib.load(OUT / name)
        canonical = np.asarray(nib.as_closest_canonical(img).dataobj)
        entry = {"axcodes": "".join(nib.aff2axcodes(img.affine)), "shape": list(SHAPE)}
        for plane in ["axial", "coronal", "sagittal"]:
            index, view = displayed(canonical, plane)
            entry[plane] = {"index": index, "voxels": view}
        reference[name] = entry
    (OUT / "orientation.json").write_text(json.dumps(reference))
    print(f"nibabel {nib.__version__}:", {k: v["axcodes"] for k, v in reference.items()})


if __name__ == "__main__":
    main()
