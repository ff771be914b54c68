//! Heatmaps: OpenCV's `COLORMAP_JET` and pytorch-grad-cam's `show_cam_on_image` overlay.

use super::VizError;
use image::RgbImage;

/// OpenCV's JET (MATLAB's jet): blue → cyan → yellow → red, breakpoints at 1/8, 3/8, 5/8, 7/8 of the range.
pub fn jet(value: u8) -> [u8; 3] {
    let x = f32::from(value) / 255.0;
    let channel = |offset: f32| {
        (4.0 * x - offset)
            .min(offset + 3.0 - 4.0 * x)
            .clamp(0.0, 1.0)
    };
    // red rises at 3/8 and falls to ½ at 1; green spans 1/8…7/8; blue starts at ½ and falls by 5/8.
    [channel(1.5), channel(0.5), channel(-0.5)].map(|c| (c * 255.0).round() as u8)
}

/// pytorch-grad-cam's `show_cam_on_image`: `heat·(1 − w) + image·w`, divided by its maximum, as RGB8. `map` holds
/// one value in [0, 1] per pixel of `image` (row-major).
pub fn overlay(image: &RgbImage, map: &[f32], image_weight: f32) -> Result<RgbImage, VizError> {
    let pixels = (image.width() * image.height()) as usize;
    if map.len() != pixels {
        return Err(VizError::Draw(format!(
            "a map of {} values cannot overlay {pixels} pixels",
            map.len()
        )));
    }
    let w = image_weight.clamp(0.0, 1.0);
    let mut blended: Vec<f32> = Vec::with_capacity(image.as_raw().len());
    for (pixel, m) in image.pixels().zip(map) {
        let heat = jet((m.clamp(0.0, 1.0) * 255.0) as u8);
        for (h, p) in heat.iter().zip(pixel.0) {
            blended.push(f32::from(*h) / 255.0 * (1.0 - w) + f32::from(p) / 255.0 * w);
        }
    }
    let max = blended.iter().copied().fold(1e-7, f32::max);
    let data = blended.iter().map(|v| (v / max * 255.0) as u8).collect();
    RgbImage::from_raw(image.width(), image.height(), data)
        .ok_or_else(|| VizError::Draw("buffer size".into()))
}

/// [`overlay`] for a map computed at another size (`map_height`×`map_width`, e.g. the model's 224×224 input): the
/// map is first resized to the image with OpenCV-style bilinear interpolation, as pytorch-grad-cam resizes CAMs.
pub fn overlay_resized(
    image: &RgbImage,
    map: &[f32],
    map_height: usize,
    map_width: usize,
    image_weight: f32,
) -> Result<RgbImage, VizError> {
    let (w, h) = image.dimensions();
    let resized = crate::cam::postprocess::resize_bilinear(
        map, map_height, map_width, h as usize, w as usize,
    );
    overlay(image, &resized, image_weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_matches_opencv() {
        // cv2.applyColorMap(arange(256), COLORMAP_JET) from OpenCV 5.0.0, as RGB (tools: see tests/fixtures/viz).
        let lut = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/viz/cv2_jet_rgb.u8"
        ))
        .expect("fixture");
        let mut worst = 0;
        for v in 0..=255u8 {
            let ours = jet(v);
            for c in 0..3 {
                worst = worst.max(ours[c].abs_diff(lut[usize::from(v) * 3 + c]));
            }
        }
        assert!(worst <= 2, "max difference {worst}");
    }

    #[test]
    fn overlay_blends_and_normalises_like_pytorch_grad_cam() {
        let image = RgbImage::from_pixel(2, 1, image::Rgb([255, 255, 255]));
        // w = 1: the image alone, divided by its max (1) → unchanged.
        assert_eq!(
            overlay(&image, &[0.0, 1.0], 1.0).expect("overlay").as_raw(),
            image.as_raw()
        );
        // w = 0: the heatmap alone: map 0 → dark blue (0, 0, 128), map 1 → dark red (128, 0, 0); max is 128/255.
        let heat = overlay(&image, &[0.0, 1.0], 0.0).expect("overlay");
        assert_eq!(heat.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(heat.get_pixel(1, 0).0, [255, 0, 0]);
        assert!(overlay(&image, &[0.5], 0.5).is_err());
    }
}
