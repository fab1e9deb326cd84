//! PNG copies of the SVG plots (resvg: pure Rust, no browser), for viewers and documents that
//! do not take SVG. Text uses the system's DejaVu Sans (Debian `fonts-dejavu-core`).
use anyhow::{Context, Result};
use resvg::usvg;

/// Renders SVG documents; holds the font database (loading it takes a while, so once per run).
pub struct Rasterizer {
    options: usvg::Options<'static>,
}

impl Rasterizer {
    pub fn new() -> Self {
        let mut options = usvg::Options::default();
        let db = options.fontdb_mut();
        db.load_system_fonts();
        // fontdb's generic sans-serif is Arial, which Debian does not ship.
        db.set_sans_serif_family("DejaVu Sans");
        Self { options }
    }

    /// Whether any font was found (without one, the PNGs have no text).
    pub fn has_fonts(&self) -> bool {
        !self.options.fontdb.is_empty()
    }

    /// The PNG bytes of an SVG document, at its own size.
    pub fn png(&self, svg: &str) -> Result<Vec<u8>> {
        let tree = usvg::Tree::from_str(svg, &self.options).context("parsing the SVG")?;
        let size = tree.size().to_int_size();
        let mut pixmap =
            resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("allocating the PNG's pixels")?;
        resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
        pixmap.encode_png().context("encoding the PNG")
    }
}

impl Default for Rasterizer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_and_shapes_reach_the_pixels() {
        let r = super::Rasterizer::new();
        assert!(r.has_fonts(), "no system fonts: scripts/setup.sh installs fonts-dejavu-core");
        let svg = |body: &str| {
            format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="white"/>{body}</svg>"#
            )
        };
        let dark = |png: Vec<u8>| {
            let decoder = png::Decoder::new(std::io::Cursor::new(png));
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut buf).unwrap();
            let px = info.line_size / info.width as usize;
            buf[..info.buffer_size()].chunks(px).filter(|p| p[..3].iter().all(|&c| c < 100)).count()
        };
        let blank = dark(r.png(&svg("")).unwrap());
        let text =
            dark(r.png(&svg(r#"<text x="4" y="28" font-family="sans-serif" font-size="20">Pareto</text>"#)).unwrap());
        assert_eq!(blank, 0);
        assert!(text > 40, "the text left {text} dark pixels");
    }
}
