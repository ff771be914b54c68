//! Masks as pictures: a stored mask (0 / 255 / ignore) as an RGB tile, and a mask's outline drawn on an image.

use crate::cam::pseudo::IGNORE;
use image::{Rgb, RgbImage};

/// A `width`×`height` mask as an RGB tile: foreground white, ignore grey, background black.
pub fn mask_tile(mask: &[u8], width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = mask
            .get((y * width + x) as usize)
            .copied()
            .unwrap_or_default();
        match v {
            IGNORE => Rgb([110, 110, 110]),
            v if v > IGNORE => Rgb([255, 255, 255]),
            _ => Rgb([0, 0, 0]),
        }
    })
}

/// `image` with the outline of `mask` (`mask_width`×`mask_height`, foreground = `true`, scaled to the image by
/// nearest neighbour) drawn in `colour`: pixels of the foreground with a background 4-neighbour.
pub fn contour_overlay(
    image: &RgbImage,
    mask: &[bool],
    mask_width: u32,
    mask_height: u32,
    colour: [u8; 3],
) -> RgbImage {
    let (w, h) = image.dimensions();
    let at = |x: i64, y: i64| -> bool {
        if x < 0 || y < 0 || x >= i64::from(w) || y >= i64::from(h) {
            return false;
        }
        let mx = (x as u64 * u64::from(mask_width) / u64::from(w)) as usize;
        let my = (y as u64 * u64::from(mask_height) / u64::from(h)) as usize;
        mask.get(my * mask_width as usize + mx)
            .copied()
            .unwrap_or(false)
    };
    let thickness = (w.max(h) / 256).max(1) as i64;
    let mut out = image.clone();
    for y in 0..i64::from(h) {
        for x in 0..i64::from(w) {
            if !at(x, y) {
                continue;
            }
            let edge = (1..=thickness)
                .any(|d| !at(x - d, y) || !at(x + d, y) || !at(x, y - d) || !at(x, y + d));
            if edge {
                out.put_pixel(x as u32, y as u32, Rgb(colour));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outline_of_a_square_is_its_border_only() {
        let image = RgbImage::from_pixel(8, 8, Rgb([0, 0, 0]));
        // A 4×4 mask with a 2×2 square in the middle, drawn on an 8×8 image: a 4×4 square at (2..6).
        let mut mask = vec![false; 16];
        for (x, y) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            mask[y * 4 + x] = true;
        }
        let out = contour_overlay(&image, &mask, 4, 4, [255, 0, 0]);
        let red: Vec<(u32, u32)> = out
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0 == [255, 0, 0])
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(red.len(), 12, "the 4×4 square's border: {red:?}");
        assert!(red
            .iter()
            .all(|(x, y)| (2..6).contains(x) && (2..6).contains(y)));
        assert_eq!(out.get_pixel(3, 3).0, [0, 0, 0]);
    }

    #[test]
    fn tiles_show_foreground_ignore_and_background() {
        let tile = mask_tile(&[0, 255, IGNORE, 0], 2, 2);
        assert_eq!(tile.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(tile.get_pixel(0, 1).0, [110, 110, 110]);
        assert_eq!(tile.get_pixel(0, 0).0, [0, 0, 0]);
    }
}
