//! Small geometric helpers for the phantom: lobulated blobs, mass-effect warps, distance maps, sampling.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A closed lobulated outline: radius `r(θ) = radius · (1 + Σₖ aₖ cos(kθ + φₖ))`, k = 2..5, optionally
/// stretched along the two image axes (an ellipse's cross-section).
#[derive(Debug, Clone)]
pub struct Blob {
    pub centre: [f32; 2],
    pub radius: f32,
    stretch: [f32; 2],
    harmonics: [(f32, f32); 4],
}

impl Blob {
    pub fn circle(centre: [f32; 2], radius: f32) -> Blob {
        Blob {
            centre,
            radius,
            stretch: [1.0, 1.0],
            harmonics: [(0.0, 0.0); 4],
        }
    }

    /// The same outline with semi-axes `radius · stretch[0]` (columns) and `radius · stretch[1]` (rows).
    pub fn stretched(self, stretch: [f32; 2]) -> Blob {
        Blob { stretch, ..self }
    }

    /// A blob whose outline wobbles by up to about `irregularity` of its radius.
    pub fn random(centre: [f32; 2], radius: f32, irregularity: f32, rng: &mut ChaCha8Rng) -> Blob {
        let harmonics = std::array::from_fn(|k| {
            let amplitude =
                rng.random_range(-irregularity..=irregularity) / (k as f32 + 1.0).sqrt();
            (amplitude, rng.random_range(0.0..std::f32::consts::TAU))
        });
        Blob {
            centre,
            radius,
            stretch: [1.0, 1.0],
            harmonics,
        }
    }

    /// Normalised radius of `p`: < 1 inside, 1 on the outline.
    pub fn rho(&self, p: [f32; 2]) -> f32 {
        let dx = (p[0] - self.centre[0]) / self.stretch[0];
        let dy = (p[1] - self.centre[1]) / self.stretch[1];
        let distance = (dx * dx + dy * dy).sqrt();
        if distance > self.radius * 2.5 {
            return distance / self.radius;
        }
        let theta = dy.atan2(dx);
        let wobble: f32 = self
            .harmonics
            .iter()
            .enumerate()
            .map(|(k, (a, phase))| a * ((k as f32 + 2.0) * theta + phase).cos())
            .sum();
        distance / (self.radius * (1.0 + wobble).max(0.3))
    }
}

/// Coverage (0–1) of a pixel at normalised radius `rho` of a shape of nominal radius `radius` mm: a 1 mm soft edge.
pub fn smooth_inside(rho: f32, radius: f32) -> f32 {
    (0.5 - (rho - 1.0) * radius).clamp(0.0, 1.0)
}

/// Mass effect: anatomy is pushed radially away from `centre`. Where the output shows point p, the anatomy comes
/// from `centre + (p − centre) · (1 − strength · exp(−|p − centre|² / sigma²))`; with strength < 1 the map is
/// monotonic along each ray, so nothing folds.
#[derive(Debug, Clone, Copy)]
pub struct Warp {
    pub centre: [f32; 2],
    pub strength: f32,
    pub sigma: f32,
}

impl Warp {
    pub fn source(&self, p: [f32; 2]) -> [f32; 2] {
        let (dx, dy) = (p[0] - self.centre[0], p[1] - self.centre[1]);
        let r2 = (dx * dx + dy * dy) / (self.sigma * self.sigma);
        if r2 > 9.0 {
            return p;
        }
        let k = 1.0 - self.strength * (-r2).exp();
        [self.centre[0] + dx * k, self.centre[1] + dy * k]
    }
}

/// For each `true` pixel, the distance (pixels, chamfer 1/√2 approximation of Euclidean) to the nearest `false`
/// pixel; 0 for `false` pixels. Pixels beyond the border count as `border`.
pub fn distance_to_false(mask: &[bool], width: usize, height: usize, border: bool) -> Vec<f32> {
    let outside = if border { f32::INFINITY } else { 0.0 };
    const DIAGONAL: f32 = std::f32::consts::SQRT_2;
    let mut d: Vec<f32> = mask
        .iter()
        .map(|m| if *m { f32::INFINITY } else { 0.0 })
        .collect();
    let get = |d: &[f32], x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
            outside
        } else {
            d[y as usize * width + x as usize]
        }
    };
    for y in 0..height as isize {
        for x in 0..width as isize {
            let i = y as usize * width + x as usize;
            if d[i] > 0.0 {
                let best = (get(&d, x - 1, y) + 1.0)
                    .min(get(&d, x, y - 1) + 1.0)
                    .min(get(&d, x - 1, y - 1) + DIAGONAL)
                    .min(get(&d, x + 1, y - 1) + DIAGONAL);
                d[i] = d[i].min(best);
            }
        }
    }
    for y in (0..height as isize).rev() {
        for x in (0..width as isize).rev() {
            let i = y as usize * width + x as usize;
            if d[i] > 0.0 {
                let best = (get(&d, x + 1, y) + 1.0)
                    .min(get(&d, x, y + 1) + 1.0)
                    .min(get(&d, x + 1, y + 1) + DIAGONAL)
                    .min(get(&d, x - 1, y + 1) + DIAGONAL);
                d[i] = d[i].min(best);
            }
        }
    }
    d
}

/// Bilinear sample of a row-major map at continuous pixel position (x, y) (pixel centres at integers); 0 outside.
pub fn bilinear(map: &[f32], width: usize, height: usize, x: f32, y: f32) -> f32 {
    if !(x > -1.0 && y > -1.0 && x < width as f32 && y < height as f32) {
        return 0.0;
    }
    // x, y > -1 here, so truncating x + 1 is floor(x) + 1 without a libm call.
    let (x0, y0) = ((x + 1.0) as isize - 1, (y + 1.0) as isize - 1);
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: isize, yy: isize| -> f32 {
        if xx < 0 || yy < 0 || xx >= width as isize || yy >= height as isize {
            0.0
        } else {
            map[yy as usize * width + xx as usize]
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
    let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_map_of_a_square() {
        let (w, h) = (9, 9);
        let mask: Vec<bool> = (0..w * h)
            .map(|i| (2..7).contains(&(i % w)) && (2..7).contains(&(i / w)))
            .collect();
        let d = distance_to_false(&mask, w, h, false);
        assert_eq!(d[0], 0.0);
        assert_eq!(d[2 * w + 2], 1.0);
        assert_eq!(d[4 * w + 4], 3.0);
        assert_eq!(d[3 * w + 4], 2.0);
    }

    #[test]
    fn warp_is_identity_far_away_and_monotonic_along_a_ray() {
        let warp = Warp {
            centre: [0.0, 0.0],
            strength: 0.35,
            sigma: 10.0,
        };
        assert_eq!(warp.source([100.0, 0.0]), [100.0, 0.0]);
        let mut last = -1.0;
        for i in 0..400 {
            let r = i as f32 * 0.1;
            let s = warp.source([r, 0.0])[0];
            assert!(s > last, "fold at r={r}");
            last = s;
        }
    }

    #[test]
    fn blob_rho_is_one_on_a_circle_outline() {
        let blob = Blob::circle([5.0, 5.0], 3.0);
        assert!((blob.rho([8.0, 5.0]) - 1.0).abs() < 1e-6);
        assert!(blob.rho([5.0, 5.0]) < 1e-6);
        assert!((smooth_inside(1.0, 3.0) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn bilinear_interpolates_between_pixels() {
        let map = [0.0, 1.0, 2.0, 3.0];
        assert!((bilinear(&map, 2, 2, 0.5, 0.5) - 1.5).abs() < 1e-6);
        assert_eq!(bilinear(&map, 2, 2, 1.0, 1.0), 3.0);
        assert_eq!(bilinear(&map, 2, 2, -5.0, 0.0), 0.0);
    }
}
