//! Synthetic lesions drawn on a 1 mm slice: where each tumour type sits, its shape, and how it looks on each
//! sequence (appearance facts in `shared/design.md`). Intensities are in units of white matter on T1 (= 1).

use super::anatomy::{Anatomy, Plane, Slice, CSF_LEVEL, GREY_LEVEL, SELLA_VOXEL, WHITE_LEVEL};
use super::geometry::{smooth_inside, Blob, Warp};
use super::Sequence;
use crate::data::Class;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A lesion placed on a slice, with the facts a user may want to check against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LesionRecord {
    /// Centre in slice pixels (1 mm), before the output's rotation and scaling.
    pub centre_mm: [f32; 2],
    /// Nominal radius (mm) of the tumour's cross-section.
    pub radius_mm: f32,
}

/// The per-image appearance of a lesion.
pub struct Lesion {
    shape: Shape,
    /// Mass effect: how the surrounding anatomy is pushed aside.
    pub warp: Warp,
    pub record: LesionRecord,
}

enum Shape {
    Glioma {
        tumour: Blob,
        edema: Blob,
        /// Fraction of the tumour radius that is necrotic core.
        core: f32,
    },
    Meningioma {
        dura: [f32; 2],
        tangent: [f32; 2],
        inward: [f32; 2],
        half_base: f32,
        depth: f32,
        tail: f32,
    },
    Pituitary {
        lobes: Vec<Blob>,
        cysts: Vec<Blob>,
    },
}

/// Maps derived from a slice that lesion placement needs.
pub struct SliceMaps {
    /// Distance (mm) from each brain pixel to the nearest non-brain pixel; 0 outside.
    pub depth_in_brain: Vec<f32>,
    /// Weight 1 inside the skull's inner table (brain dilated by about 3.5 mm), 0 outside.
    pub intracranial: Vec<f32>,
}

impl SliceMaps {
    pub fn new(slice: &Slice) -> SliceMaps {
        let brain: Vec<bool> = slice.brain.iter().map(|b| *b > 0.5).collect();
        let depth_in_brain =
            super::geometry::distance_to_false(&brain, slice.width, slice.height, false);
        let outside: Vec<bool> = brain.iter().map(|b| !b).collect();
        let distance_out =
            super::geometry::distance_to_false(&outside, slice.width, slice.height, true);
        let intracranial = distance_out
            .iter()
            .map(|d| (4.0 - d).clamp(0.0, 1.0))
            .collect();
        SliceMaps {
            depth_in_brain,
            intracranial,
        }
    }
}

impl Lesion {
    /// Place a lesion of `class` on `slice`, its sizes multiplied by `scale` (1 = the realistic ranges); `None`
    /// for no tumour. The random draws do not depend on `scale`.
    pub fn place(
        class: Class,
        anatomy: &Anatomy,
        slice: &Slice,
        maps: &SliceMaps,
        scale: f32,
        rng: &mut ChaCha8Rng,
    ) -> Option<Lesion> {
        match class {
            Class::NoTumor => None,
            Class::Glioma => Some(place_glioma(slice, maps, scale, rng)),
            Class::Meningioma => Some(place_meningioma(anatomy, slice, maps, scale, rng)),
            Class::Pituitary => Some(place_pituitary(anatomy, slice, scale, rng)),
        }
    }

    /// Paint the lesion at point `p` (mm) over the tissue value `tissue`; returns the new value and the tumour's
    /// coverage of this point (0–1, the true mask before thresholding).
    /// `brain` and `intracranial` are the anatomy's masks (0–1) at the unwarped point.
    pub fn paint(
        &self,
        p: [f32; 2],
        tissue: f32,
        brain: f32,
        intracranial: f32,
        sequence: Sequence,
    ) -> (f32, f32) {
        match &self.shape {
            Shape::Glioma {
                tumour,
                edema,
                core,
            } => {
                let rho = tumour.rho(p);
                let cover = smooth_inside(rho, tumour.radius);
                let edema_cover = smooth_inside(edema.rho(p), edema.radius) * brain;
                let core_cover = smooth_inside(rho / core, tumour.radius * core);
                let ring = (cover - core_cover).max(0.0);
                let (core_value, ring_value) = match sequence {
                    Sequence::T1 => (0.35, 0.62),
                    Sequence::T1Contrast => (0.35, 1.55),
                    Sequence::T2 => (1.5, 0.95),
                };
                let edematous = match sequence {
                    Sequence::T1 | Sequence::T1Contrast => tissue * 0.85,
                    Sequence::T2 => tissue.max(1.15),
                };
                let v = lerp(tissue, edematous, edema_cover);
                let v = v * (1.0 - cover) + core_cover * core_value + ring * ring_value;
                (v, cover)
            }
            Shape::Meningioma {
                dura,
                tangent,
                inward,
                half_base,
                depth,
                tail,
            } => {
                let d = [p[0] - dura[0], p[1] - dura[1]];
                let t = d[0] * tangent[0] + d[1] * tangent[1];
                let s = d[0] * inward[0] + d[1] * inward[1];
                let rho = ((t / half_base).powi(2) + (s / depth).powi(2)).sqrt();
                // Extra-axial but inside the skull: the dome stops at the dura and at the skull's inner table.
                let cover = smooth_inside(rho, *depth) * (s + 0.5).clamp(0.0, 1.0) * intracranial;
                // A thin CSF cleft around the dome, where it meets brain.
                let cleft = (smooth_inside(rho / 1.12, *depth * 1.12) - cover).max(0.0) * brain;
                // Dural tail: a thin enhancing line along the dura beyond the base (contrast only).
                let along = (t.abs() - half_base).max(0.0);
                let tail_cover = if along > 0.0 && along < *tail && s.abs() < 1.2 {
                    (1.0 - along / tail) * (1.0 - s.abs() / 1.2)
                } else {
                    0.0
                };
                let (value, cleft_value, tail_value) = match sequence {
                    Sequence::T1 => (0.62, 0.4, 0.0),
                    Sequence::T1Contrast => (1.5, 0.4, 0.7),
                    Sequence::T2 => (1.05, 1.4, 0.0),
                };
                let v = lerp(tissue, cleft_value, cleft);
                let v = lerp(v, value, cover) + tail_cover * tail_value;
                (v, cover)
            }
            Shape::Pituitary { lobes, cysts } => {
                let cover = lobes
                    .iter()
                    .map(|b| smooth_inside(b.rho(p), b.radius))
                    .fold(0.0f32, f32::max);
                let cyst = cysts
                    .iter()
                    .map(|b| smooth_inside(b.rho(p), b.radius))
                    .fold(0.0f32, f32::max)
                    * cover;
                let (solid, cystic) = match sequence {
                    Sequence::T1 => (0.75, 0.55),
                    Sequence::T1Contrast => (1.15, 0.5),
                    Sequence::T2 => (0.95, 1.45),
                };
                let v = lerp(tissue, lerp(solid, cystic, cyst), cover);
                (v, cover)
            }
        }
    }
}

/// A lesion as a slice cuts it: the whole lesion on the slice it was placed on, and on a slice `offset` mm away
/// (in a 3-D phantom) the same lesion shrunk about its anchor by √(1 − (offset / semi-axis)²) — an ellipsoidal
/// taper along the slice's normal. The anchor is a meningioma's dural base (it stays attached as it narrows) and
/// the centre of the others.
pub struct Section<'a> {
    lesion: &'a Lesion,
    anchor: [f32; 2],
    scale: f32,
}

impl<'a> Section<'a> {
    /// The lesion on the slice it was placed on.
    pub fn full(lesion: &'a Lesion) -> Section<'a> {
        Section {
            lesion,
            anchor: lesion.record.centre_mm,
            scale: 1.0,
        }
    }

    /// The lesion `offset` mm from its centre slice, for a lesion of that `semi_axis` (mm) along the normal;
    /// `None` beyond its end.
    pub fn at(lesion: &'a Lesion, offset: f32, semi_axis: f32) -> Option<Section<'a>> {
        let fraction = offset / semi_axis.max(1e-3);
        let scale = (1.0 - fraction * fraction).max(0.0).sqrt();
        let anchor = match &lesion.shape {
            Shape::Meningioma { dura, .. } => *dura,
            _ => lesion.record.centre_mm,
        };
        (scale >= 0.1).then_some(Section {
            lesion,
            anchor,
            scale,
        })
    }

    /// Point `p` of the slice in the lesion's own (centre-slice) frame.
    fn inside(&self, p: [f32; 2]) -> [f32; 2] {
        if self.scale == 1.0 {
            return p;
        }
        let a = self.anchor;
        [
            a[0] + (p[0] - a[0]) / self.scale,
            a[1] + (p[1] - a[1]) / self.scale,
        ]
    }

    /// Mass effect: where the anatomy shown at `p` comes from.
    pub fn source(&self, p: [f32; 2]) -> [f32; 2] {
        if self.scale == 1.0 {
            return self.lesion.warp.source(p);
        }
        let q = self.lesion.warp.source(self.inside(p));
        let a = self.anchor;
        [
            a[0] + (q[0] - a[0]) * self.scale,
            a[1] + (q[1] - a[1]) * self.scale,
        ]
    }

    /// [`Lesion::paint`] of this cross-section.
    pub fn paint(
        &self,
        p: [f32; 2],
        tissue: f32,
        brain: f32,
        intracranial: f32,
        sequence: Sequence,
    ) -> (f32, f32) {
        self.lesion
            .paint(self.inside(p), tissue, brain, intracranial, sequence)
    }
}

/// Tissue value of a T1 grey level on a sequence (before lesions). `intracranial` is 1 inside the skull.
pub fn tissue_value(t1: f32, intracranial: f32, sequence: Sequence) -> f32 {
    let t1_value = t1 / WHITE_LEVEL;
    match sequence {
        Sequence::T1 | Sequence::T1Contrast => t1_value,
        Sequence::T2 => {
            // Inside the skull: fluid bright, grey matter above white matter. Outside: scalp fat stays bright.
            let inside = if t1 <= CSF_LEVEL {
                1.5
            } else if t1 <= GREY_LEVEL {
                lerp(1.5, 0.95, (t1 - CSF_LEVEL) / (GREY_LEVEL - CSF_LEVEL))
            } else {
                lerp(
                    0.95,
                    0.65,
                    ((t1 - GREY_LEVEL) / (WHITE_LEVEL - GREY_LEVEL)).min(1.0),
                )
            };
            lerp(t1_value * 0.85, inside, intracranial)
        }
    }
}

/// The normal pituitary gland enhances on contrast T1 in every class (so its brightness alone says nothing).
pub fn normal_gland(anatomy: &Anatomy, slice: &Slice) -> Option<Blob> {
    let (centre, distance) = anatomy.voxel_to_display(slice.plane, slice.index, SELLA_VOXEL);
    let radius = 4.5f32;
    (distance.abs() < radius * 0.9)
        .then(|| Blob::circle(centre, (radius * radius - distance * distance).sqrt()))
}

fn place_glioma(slice: &Slice, maps: &SliceMaps, scale: f32, rng: &mut ChaCha8Rng) -> Lesion {
    let mut radius = rng.random_range(8.0..22.0f32) * scale;
    let mut centre = None;
    for _ in 0..400 {
        let x = rng.random_range(0..slice.width);
        let y = rng.random_range(0..slice.height);
        let i = slice.at(x, y);
        if slice.t1[i] > 98.0 && maps.depth_in_brain[i] >= radius * 0.8 + 2.0 {
            centre = Some([x as f32, y as f32]);
            break;
        }
    }
    let centre = centre.unwrap_or_else(|| {
        let (i, depth) = deepest(&maps.depth_in_brain);
        radius = radius.min((depth - 2.0).max(5.0));
        [(i % slice.width) as f32, (i / slice.width) as f32]
    });
    let tumour = Blob::random(centre, radius, 0.12, rng);
    let edema = Blob::random(centre, radius * rng.random_range(1.3..1.9), 0.2, rng);
    let core = rng.random_range(0.35..0.65);
    Lesion {
        warp: Warp {
            centre,
            strength: rng.random_range(0.2..0.35),
            sigma: radius,
        },
        shape: Shape::Glioma {
            tumour,
            edema,
            core,
        },
        record: LesionRecord {
            centre_mm: centre,
            radius_mm: radius,
        },
    }
}

fn place_meningioma(
    anatomy: &Anatomy,
    slice: &Slice,
    maps: &SliceMaps,
    scale: f32,
    rng: &mut ChaCha8Rng,
) -> Lesion {
    let depth = rng.random_range(7.0..20.0f32);
    let half_base = rng.random_range(depth.max(10.0)..depth.max(10.0) + 12.0) * scale;
    let depth = depth * scale;
    // A point on the brain surface that faces the skull: outward from it, scalp or skull appears within 15 mm
    // (not the cut edge of the volume or the spinal canal); on coronal and sagittal slices, above the skull base.
    let ([_, sella_row], _) = anatomy.voxel_to_display(slice.plane, slice.index, SELLA_VOXEL);
    let lowest_row = if slice.plane == Plane::Axial {
        slice.height as f32
    } else {
        sella_row + 5.0
    };
    let mut site = None;
    for _ in 0..4000 {
        let x = rng.random_range(3..slice.width - 3);
        let y = rng.random_range(3..slice.height - 3);
        let d = maps.depth_in_brain[slice.at(x, y)];
        if d <= 0.0 || d > 1.5 || y as f32 > lowest_row {
            continue;
        }
        let Some(inward) = inward_normal(slice, maps, x, y) else {
            continue;
        };
        let faces_skull = (3..=15).any(|step| {
            let px = x as f32 - inward[0] * step as f32;
            let py = y as f32 - inward[1] * step as f32;
            super::geometry::bilinear(&slice.t1, slice.width, slice.height, px, py) > 70.0
        });
        if faces_skull {
            site = Some((x, y, inward));
            break;
        }
    }
    let (x, y, inward) = site.unwrap_or((slice.width / 2, 3, [0.0, 1.0]));
    let tangent = [-inward[1], inward[0]];
    let dura = [x as f32 - inward[0] * 1.5, y as f32 - inward[1] * 1.5];
    let centre = [
        dura[0] + inward[0] * depth * 0.4,
        dura[1] + inward[1] * depth * 0.4,
    ];
    Lesion {
        warp: Warp {
            centre,
            strength: rng.random_range(0.25..0.4),
            sigma: depth,
        },
        shape: Shape::Meningioma {
            dura,
            tangent,
            inward,
            half_base,
            depth,
            tail: rng.random_range(6.0..15.0),
        },
        record: LesionRecord {
            centre_mm: centre,
            radius_mm: 0.5 * (half_base + depth),
        },
    }
}

/// Unit vector into the brain at a surface pixel (gradient of the depth map over ±3 px); `None` where the surface
/// has no clear direction (a thin or symmetric spot).
fn inward_normal(slice: &Slice, maps: &SliceMaps, x: usize, y: usize) -> Option<[f32; 2]> {
    let sample = |dx: isize, dy: isize| {
        let xx = (x as isize + dx).clamp(0, slice.width as isize - 1) as usize;
        let yy = (y as isize + dy).clamp(0, slice.height as isize - 1) as usize;
        maps.depth_in_brain[slice.at(xx, yy)]
    };
    let gradient = [sample(3, 0) - sample(-3, 0), sample(0, 3) - sample(0, -3)];
    let norm = (gradient[0] * gradient[0] + gradient[1] * gradient[1]).sqrt();
    (norm > 1.0).then(|| [gradient[0] / norm, gradient[1] / norm])
}

fn place_pituitary(anatomy: &Anatomy, slice: &Slice, scale: f32, rng: &mut ChaCha8Rng) -> Lesion {
    let jitter = |rng: &mut ChaCha8Rng| rng.random_range(-1.5..1.5f32);
    let sella = [
        SELLA_VOXEL[0] + jitter(rng),
        SELLA_VOXEL[1] + jitter(rng),
        SELLA_VOXEL[2] + jitter(rng) * 0.5,
    ];
    // A "snowman": an intrasellar lobe, then lobes stacked upward (suprasellar extension) until the adenoma
    // reaches through this slice. Each lobe is an axis-aligned ellipsoid (semi-axes x, y, z in mm), wide enough
    // across the slice's normal axis for an off-centre sagittal or coronal slice to cut it; the slice cuts an
    // ellipse from it.
    let axis = slice.plane.normal_axis();
    let offset = (slice.index as f32 - sella[axis]).abs();
    let lobe = |rng: &mut ChaCha8Rng, centre: [f32; 3], vertical: f32| {
        let mut semi = [
            rng.random_range(8.0..14.0f32) * scale,
            rng.random_range(7.0..11.0f32) * scale,
            vertical,
        ];
        if axis != 2 {
            semi[axis] = semi[axis].max(offset + rng.random_range(2.5..5.0));
        }
        (centre, semi)
    };
    let first_vertical = rng.random_range(5.5..8.5f32) * scale;
    let mut ellipsoids = vec![lobe(rng, sella, first_vertical)];
    let top_needed = if axis == 2 {
        slice.index as f32 + rng.random_range(3.0..7.0)
    } else {
        0.0
    };
    let (mut z, mut vertical) = (sella[2], first_vertical);
    let mut extra = rng.random_range(0..2usize);
    while (z + vertical < top_needed || extra > 0) && ellipsoids.len() < 8 {
        let next = rng.random_range(5.5..9.0f32) * scale;
        z += vertical * 0.7 + next * 0.5;
        let centre = [sella[0] + jitter(rng), sella[1] + jitter(rng), z];
        ellipsoids.push(lobe(rng, centre, next));
        vertical = next;
        extra = extra.saturating_sub(1);
    }
    // Display axes (columns, rows) of each plane, as volume axes.
    let (col_axis, row_axis) = match slice.plane {
        Plane::Axial => (0, 1),
        Plane::Coronal => (0, 2),
        Plane::Sagittal => (1, 2),
    };
    let mut lobes = Vec::new();
    for (centre3, semi) in &ellipsoids {
        let (centre, distance) = anatomy.voxel_to_display(slice.plane, slice.index, *centre3);
        let fraction = distance / semi[axis];
        if fraction.abs() < 0.97 {
            let k = (1.0 - fraction * fraction).sqrt();
            let (a, b) = (semi[col_axis] * k, semi[row_axis] * k);
            let radius = a.min(b);
            lobes.push(Blob::random(centre, radius, 0.06, rng).stretched([a / radius, b / radius]));
        }
    }
    if lobes.is_empty() {
        // The stack reaches the slice by construction; keep a lobe at the sella projection regardless.
        let (centre, _) = anatomy.voxel_to_display(slice.plane, slice.index, sella);
        lobes.push(Blob::circle(centre, 5.0));
    }
    let main = lobes
        .iter()
        .max_by(|a, b| a.radius.total_cmp(&b.radius))
        .map(|b| (b.centre, b.radius))
        .unwrap_or(([0.0, 0.0], 5.0));
    let cysts = (0..rng.random_range(0..3usize))
        .map(|_| {
            let angle = rng.random_range(0.0..std::f32::consts::TAU);
            let r = main.1 * rng.random_range(0.0..0.5);
            let c = [main.0[0] + r * angle.cos(), main.0[1] + r * angle.sin()];
            Blob::circle(c, main.1 * rng.random_range(0.15..0.35))
        })
        .collect();
    Lesion {
        warp: Warp {
            centre: main.0,
            strength: rng.random_range(0.1..0.2),
            sigma: main.1,
        },
        shape: Shape::Pituitary { lobes, cysts },
        record: LesionRecord {
            centre_mm: main.0,
            radius_mm: main.1,
        },
    }
}

fn deepest(depth: &[f32]) -> (usize, f32) {
    depth.iter().copied().enumerate().fold(
        (0, 0.0),
        |best, (i, d)| if d > best.1 { (i, d) } else { best },
    )
}

pub fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}
