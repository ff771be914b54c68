//! Pure image functions: torchvision-equivalent resize, flip, ImageNet normalisation, mask resize.
//!
//! torchvision's `Resize((224, 224))` on a PIL image calls `PIL.Image.resize(size, BILINEAR)`: a separable
//! convolution with a triangle filter whose support widens with the downscale factor (antialiasing).
//! fast_image_resize's `Convolution(Bilinear)` is a port of Pillow's (SIMD) convolution; the parity tests
//! measure the difference against PIL outputs committed as fixtures.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{GrayImage, RgbImage};

/// Input side of the classifier (torchvision's `Resize((224, 224))`).
pub const CLASSIFIER_SIZE: u32 = 224;
/// Input side of the segmentation U-Net.
pub const SEGMENTATION_SIZE: u32 = 128;
/// ImageNet channel means (torchvision `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (torchvision `Normalize`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why an image could not be resized.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot resize a {from_w}×{from_h} image to {to_w}×{to_h}: {message}")]
    Resize {
        from_w: u32,
        from_h: u32,
        to_w: u32,
        to_h: u32,
        message: String,
    },
}

/// Resize an RGB image like PIL's `resize((width, height), BILINEAR)`.
pub fn resize_rgb(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, PreprocessError> {
    let data = resize_u8(
        image.as_raw(),
        image.width(),
        image.height(),
        width,
        height,
        PixelType::U8x3,
    )?;
    RgbImage::from_raw(width, height, data)
        .ok_or_else(|| buffer_error(image.dimensions(), width, height))
}

/// Resize a grayscale image like PIL's `resize((width, height), BILINEAR)`.
pub fn resize_gray(
    image: &GrayImage,
    width: u32,
    height: u32,
) -> Result<GrayImage, PreprocessError> {
    let data = resize_u8(
        image.as_raw(),
        image.width(),
        image.height(),
        width,
        height,
        PixelType::U8,
    )?;
    GrayImage::from_raw(width, height, data)
        .ok_or_else(|| buffer_error(image.dimensions(), width, height))
}

/// Resize a 0/255 mask: bilinear (with antialias) then threshold at half, so the mask keeps its area better than
/// nearest-neighbour sampling does when shrinking.
pub fn resize_mask(
    mask: &GrayImage,
    width: u32,
    height: u32,
) -> Result<GrayImage, PreprocessError> {
    let mut out = resize_gray(mask, width, height)?;
    for p in out.pixels_mut() {
        p.0[0] = if p.0[0] >= 128 { 255 } else { 0 };
    }
    Ok(out)
}

/// The classifier's input image: `Resize((224, 224))`, then a horizontal flip when `flip` is set (the
/// `RandomHorizontalFlip` draw is made by the caller from its seeded stream).
pub fn classifier_input(image: &RgbImage, flip: bool) -> Result<RgbImage, PreprocessError> {
    let resized = resize_rgb(image, CLASSIFIER_SIZE, CLASSIFIER_SIZE)?;
    Ok(if flip { hflip(&resized) } else { resized })
}

/// The U-Net's input image: resized to 128×128.
pub fn segmentation_input(image: &RgbImage, flip: bool) -> Result<RgbImage, PreprocessError> {
    let resized = resize_rgb(image, SEGMENTATION_SIZE, SEGMENTATION_SIZE)?;
    Ok(if flip { hflip(&resized) } else { resized })
}

/// Mirror left–right.
pub fn hflip<P: image::Pixel + 'static>(
    image: &image::ImageBuffer<P, Vec<P::Subpixel>>,
) -> image::ImageBuffer<P, Vec<P::Subpixel>> {
    image::imageops::flip_horizontal(image)
}

/// A rectangle in fractions of an image's width and height (so one draw fits any size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EraseBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// Black out (pixel value 0, the MRI's background) every pixel of `image` where `covered(x, y)`, in place: what
/// occlusion windows, the deletion check and random erasing put over an image.
pub fn black_out(image: &mut RgbImage, covered: impl Fn(usize, usize) -> bool) {
    for (y, row) in image.rows_mut().enumerate() {
        for (x, pixel) in row.enumerate() {
            if covered(x, y) {
                *pixel = image::Rgb([0, 0, 0]);
            }
        }
    }
}

/// Black out `area` of `image` (in place): the pixels whose centres fall inside it.
pub fn erase(image: &mut RgbImage, area: &EraseBox) {
    let span = |start: f64, length: f64, side: u32| {
        let side = f64::from(side);
        let from = (start * side).round().clamp(0.0, side) as usize;
        let to = ((start + length) * side).round().clamp(0.0, side) as usize;
        from..to
    };
    let xs = span(area.left, area.width, image.width());
    let ys = span(area.top, area.height, image.height());
    black_out(image, |x, y| xs.contains(&x) && ys.contains(&y));
}

/// `ToTensor()` + `Normalize(IMAGENET_MEAN, IMAGENET_STD)`: channel-first (C, H, W) f32 values appended to `out`.
pub fn normalize_imagenet_into(image: &RgbImage, out: &mut Vec<f32>) {
    let plane = (image.width() * image.height()) as usize;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    let (r, rest) = out[start..].split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * IMAGENET_STD[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| IMAGENET_MEAN[c] / IMAGENET_STD[c]);
    for (i, px) in image.pixels().enumerate() {
        r[i] = f32::from(px.0[0]) * scale[0] - shift[0];
        g[i] = f32::from(px.0[1]) * scale[1] - shift[1];
        b[i] = f32::from(px.0[2]) * scale[2] - shift[2];
    }
}

fn resize_u8(
    src: &[u8],
    src_w: u32,
    src_h: u32,
    width: u32,
    height: u32,
    pixel_type: PixelType,
) -> Result<Vec<u8>, PreprocessError> {
    let error = |message: String| PreprocessError::Resize {
        from_w: src_w,
        from_h: src_h,
        to_w: width,
        to_h: height,
        message,
    };
    if width == 0 || height == 0 || src_w == 0 || src_h == 0 {
        return Err(error("empty image".into()));
    }
    let source = ImageRef::new(src_w, src_h, src, pixel_type).map_err(|e| error(e.to_string()))?;
    let mut target = Image::new(width, height, pixel_type);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|e| error(e.to_string()))?;
    Ok(target.into_vec())
}

fn buffer_error((from_w, from_h): (u32, u32), to_w: u32, to_h: u32) -> PreprocessError {
    PreprocessError::Resize {
        from_w,
        from_h,
        to_w,
        to_h,
        message: "the resized buffer has the wrong length".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erase_blacks_out_exactly_the_box() {
        let mut image = RgbImage::from_pixel(10, 20, image::Rgb([200, 100, 50]));
        let area = EraseBox {
            left: 0.2,
            top: 0.3,
            width: 0.5,
            height: 0.4,
        };
        erase(&mut image, &area);
        for (x, y, px) in image.enumerate_pixels() {
            let inside = (2..7).contains(&x) && (6..14).contains(&y);
            let want = if inside { [0, 0, 0] } else { [200, 100, 50] };
            assert_eq!(px.0, want, "({x}, {y})");
        }
        // A box running past the edge stops at it.
        erase(
            &mut image,
            &EraseBox {
                left: 0.9,
                top: 0.95,
                width: 0.5,
                height: 0.5,
            },
        );
        assert_eq!(image.get_pixel(9, 19).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(8, 19).0, [200, 100, 50]);
    }

    #[test]
    fn normalisation_matches_torchvision_formula() {
        let image = RgbImage::from_fn(2, 1, |x, _| {
            image::Rgb([0, 128, if x == 0 { 255 } else { 10 }])
        });
        let mut out = Vec::new();
        normalize_imagenet_into(&image, &mut out);
        assert_eq!(out.len(), 6);
        let expect = |v: f32, c: usize| (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let want = [
            expect(0.0, 0),
            expect(0.0, 0),
            expect(128.0, 1),
            expect(128.0, 1),
            expect(255.0, 2),
            expect(10.0, 2),
        ];
        for (got, want) in out.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn flip_mirrors_columns() {
        let image = GrayImage::from_fn(3, 2, |x, y| image::Luma([(x + 10 * y) as u8]));
        let flipped = hflip(&image);
        assert_eq!(flipped.get_pixel(0, 0).0[0], 2);
        assert_eq!(flipped.get_pixel(2, 1).0[0], 10);
        assert_eq!(hflip(&flipped), image);
    }

    #[test]
    fn resize_keeps_a_constant_image_constant_and_refuses_empty_targets() {
        let image = RgbImage::from_pixel(300, 217, image::Rgb([77, 77, 77]));
        let out = resize_rgb(&image, 224, 224).expect("resize");
        assert!(out.pixels().all(|p| p.0 == [77, 77, 77]));
        assert!(resize_rgb(&image, 0, 224).is_err());
    }

    #[test]
    fn mask_resize_stays_binary_and_keeps_area() {
        let mask = GrayImage::from_fn(400, 400, |x, y| {
            let (dx, dy) = (x as f32 - 200.0, y as f32 - 180.0);
            image::Luma([if dx * dx + dy * dy < 80.0 * 80.0 {
                255
            } else {
                0
            }])
        });
        let small = resize_mask(&mask, 128, 128).expect("resize");
        assert!(small.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
        let area = small.pixels().filter(|p| p.0[0] == 255).count() as f32;
        let want = std::f32::consts::PI * (80.0f32 * 128.0 / 400.0).powi(2);
        assert!((area - want).abs() / want < 0.03, "{area} vs {want}");
    }
}
