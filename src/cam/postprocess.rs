//! pytorch-grad-cam's `scale_cam_image`, twice: min-max scale each map, resize it with OpenCV's bilinear
//! (`cv2.resize`, INTER_LINEAR: half-pixel centres, edges clamped), min-max scale again.

/// Scale to [0, 1] as pytorch-grad-cam does: `(v − min) / (1e-7 + max(v − min))`.
pub fn min_max(values: &mut [f32]) {
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    for v in values.iter_mut() {
        *v -= min;
    }
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in values.iter_mut() {
        *v /= 1e-7 + max;
    }
}

/// `cv2.resize(src, (out_w, out_h), interpolation=INTER_LINEAR)` for a float map.
pub fn resize_bilinear(
    src: &[f32],
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let axis = |d: usize, scale: f32, n: usize| -> (usize, usize, f32) {
        let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (s as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        let f = if i0 == n - 1 { 0.0 } else { s - i0 as f32 };
        (i0, i1, f)
    };
    let (sy, sx) = (height as f32 / out_h as f32, width as f32 / out_w as f32);
    let columns: Vec<(usize, usize, f32)> = (0..out_w).map(|x| axis(x, sx, width)).collect();
    let mut out = Vec::with_capacity(out_h * out_w);
    for y in 0..out_h {
        let (y0, y1, fy) = axis(y, sy, height);
        for &(x0, x1, fx) in &columns {
            let top = src[y0 * width + x0] * (1.0 - fx) + src[y0 * width + x1] * fx;
            let bottom = src[y1 * width + x0] * (1.0 - fx) + src[y1 * width + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// pytorch-grad-cam's per-layer step: a raw map, ReLU'd, min-max scaled, resized to `out_h`×`out_w`.
pub fn scaled_resized(
    raw: &[f32],
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let mut map: Vec<f32> = raw.iter().map(|v| v.max(0.0)).collect();
    min_max(&mut map);
    resize_bilinear(&map, height, width, out_h, out_w)
}

/// A raw map of one layer → the final `out_h`×`out_w` map in [0, 1].
pub fn finish(raw: &[f32], height: usize, width: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let mut big = scaled_resized(raw, height, width, out_h, out_w);
    min_max(&mut big);
    big
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_matches_hand_computed_cv2_values() {
        // 2×2 → 4×4 with half-pixel centres: the corners keep their values, the inside interpolates.
        let src = [0.0, 1.0, 2.0, 3.0];
        let out = resize_bilinear(&src, 2, 2, 4, 4);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[15], 3.0);
        // Output x = 1 samples source x = 0.25: 0.75·0 + 0.25·1.
        assert!((out[1] - 0.25).abs() < 1e-6);
        assert!((out[5] - (0.25 + 0.5)).abs() < 1e-6, "{}", out[5]);
    }

    #[test]
    fn finish_spans_zero_to_one_and_keeps_a_flat_map_at_zero() {
        let raw = [0.0, 2.0, -1.0, 4.0];
        let map = finish(&raw, 2, 2, 8, 8);
        let max = map.iter().copied().fold(0.0, f32::max);
        assert!(map.iter().all(|v| (0.0..=1.0).contains(v)) && (max - 1.0).abs() < 1e-5);
        let flat = finish(&[0.0; 4], 2, 2, 4, 4);
        assert!(flat.iter().all(|v| *v == 0.0));
    }
}
