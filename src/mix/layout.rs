//! Where each participant goes on a mix canvas. Pure geometry, so it is unit-tested apart from
//! GStreamer: the call applies the result to the compositor's pads.

use crate::templates::LayoutKind;

/// A rectangle on the canvas, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

/// One participant to place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    /// Width / height of what they show (their video, or the placeholder's).
    pub aspect: f64,
}

/// Grid dimensions for `n` tiles: 1, 2 side by side, then 2×2, 3×3 and so on.
pub fn grid_dims(n: usize) -> (usize, usize) {
    match n {
        0 | 1 => (1, 1),
        2 => (2, 1),
        _ => {
            let k = (n as f64).sqrt().ceil() as usize;
            (k, k)
        }
    }
}

/// Fits a tile of `aspect` into `cell`, centred, keeping the aspect ratio (letterboxed).
pub fn fit(cell: Rect, aspect: f64) -> Rect {
    let aspect = if aspect.is_finite() && aspect > 0.0 {
        aspect
    } else {
        16.0 / 9.0
    };
    let (cw, ch) = (cell.w as f64, cell.h as f64);
    let (w, h) = if cw / ch > aspect {
        (ch * aspect, ch)
    } else {
        (cw, cw / aspect)
    };
    // Even sizes keep chroma-subsampled formats happy.
    let (w, h) = ((w as i32) & !1, (h as i32) & !1);
    Rect {
        x: cell.x + (cell.w - w) / 2,
        y: cell.y + (cell.h - h) / 2,
        w: w.max(2),
        h: h.max(2),
    }
}

/// Places `tiles` (in join order) on a `width`×`height` canvas. For the speaker layout,
/// `speaker` is the index of the active speaker (default: the first).
pub fn place(
    kind: LayoutKind,
    width: u32,
    height: u32,
    tiles: &[Tile],
    speaker: Option<usize>,
) -> Vec<Rect> {
    let (w, h) = (width as i32, height as i32);
    let n = tiles.len();
    if n == 0 {
        return vec![];
    }
    match kind {
        LayoutKind::Speaker if n > 1 => {
            let speaker = speaker.filter(|&s| s < n).unwrap_or(0);
            // The speaker fills the top four fifths; the others share the bottom strip.
            let strip = h / 5;
            let main = Rect {
                x: 0,
                y: 0,
                w,
                h: h - strip,
            };
            let others = n - 1;
            let thumb_w = (w / others as i32).min(strip * 16 / 9);
            let left = (w - thumb_w * others as i32) / 2;
            let mut k = 0;
            tiles
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if i == speaker {
                        fit(main, t.aspect)
                    } else {
                        let cell = Rect {
                            x: left + thumb_w * k,
                            y: h - strip,
                            w: thumb_w,
                            h: strip,
                        };
                        k += 1;
                        fit(cell, t.aspect)
                    }
                })
                .collect()
        }
        _ => {
            let (cols, rows) = grid_dims(n);
            let (cw, ch) = (w / cols as i32, h / rows as i32);
            tiles
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let (c, r) = ((i % cols) as i32, (i / cols) as i32);
                    fit(
                        Rect {
                            x: c * cw,
                            y: r * ch,
                            w: cw,
                            h: ch,
                        },
                        t.aspect,
                    )
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDE: Tile = Tile { aspect: 16.0 / 9.0 };

    #[test]
    fn grid_sizes_follow_the_participant_count() {
        assert_eq!(grid_dims(1), (1, 1));
        assert_eq!(grid_dims(2), (2, 1));
        assert_eq!(grid_dims(3), (2, 2));
        assert_eq!(grid_dims(4), (2, 2));
        assert_eq!(grid_dims(5), (3, 3));
        assert_eq!(grid_dims(9), (3, 3));
        assert_eq!(grid_dims(10), (4, 4));
    }

    #[test]
    fn one_participant_fills_the_canvas() {
        let r = place(LayoutKind::Grid, 1280, 720, &[WIDE], None);
        assert_eq!(
            r,
            vec![Rect {
                x: 0,
                y: 0,
                w: 1280,
                h: 720
            }]
        );
    }

    #[test]
    fn two_sit_side_by_side_letterboxed() {
        let r = place(LayoutKind::Grid, 1280, 720, &[WIDE, WIDE], None);
        assert_eq!(
            r[0],
            Rect {
                x: 0,
                y: 180,
                w: 640,
                h: 360
            }
        );
        assert_eq!(
            r[1],
            Rect {
                x: 640,
                y: 180,
                w: 640,
                h: 360
            }
        );
    }

    #[test]
    fn four_make_a_two_by_two_grid_in_join_order() {
        let r = place(LayoutKind::Grid, 1280, 720, &[WIDE; 4], None);
        assert_eq!((r[0].x, r[0].y), (0, 0));
        assert_eq!((r[1].x, r[1].y), (640, 0));
        assert_eq!((r[2].x, r[2].y), (0, 360));
        assert_eq!((r[3].x, r[3].y), (640, 360));
    }

    #[test]
    fn portrait_video_is_pillarboxed() {
        let r = place(
            LayoutKind::Grid,
            1280,
            720,
            &[Tile { aspect: 9.0 / 16.0 }],
            None,
        );
        assert_eq!(r[0].h, 720);
        assert!(r[0].w < 420 && r[0].x > 400, "{:?}", r[0]);
    }

    #[test]
    fn speaker_is_large_and_others_are_thumbnails() {
        let r = place(LayoutKind::Speaker, 1280, 720, &[WIDE; 3], Some(1));
        assert!(r[1].w > 900, "{:?}", r[1]);
        assert!(r[0].w < 300 && r[2].w < 300 && r[0].y >= 576, "{r:?}");
        assert_ne!(r[0].x, r[2].x);
    }
}
