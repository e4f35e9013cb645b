//! Polygons written as a GeoJSON FeatureCollection that QuPath's "Import objects" (File > Import objects,
//! or drag and drop) reads: one Feature per region, a Polygon with its holes, and `properties` with
//! `objectType`, `classification: {name, color}` and, per object, a `name` and `measurements` as QuPath
//! 0.4 and later export them (an object of name to number; non-finite values are left out, as JSON has
//! no NaN). Written feature by feature, so a whole slide's regions never need to be held at once.

use std::io::{self, Write};

use super::Polygon;

/// How the features are labelled in QuPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureStyle {
    /// `objectType`: "annotation" (editable in QuPath) or "detection" (lighter, for many objects).
    pub object_type: String,
    /// `classification.name`.
    pub class: String,
    /// `classification.color`, RGB.
    pub color: [u8; 3],
}

/// A FeatureCollection being written to `out`.
pub struct FeatureWriter<W: Write> {
    out: W,
    properties: String,
    classification: String,
    features: usize,
}

/// What one object carries besides its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectProperties<'a> {
    /// `objectType`.
    pub object_type: &'a str,
    /// `name` (QuPath's object name), e.g. the object's id.
    pub name: &'a str,
    /// `measurements`, in order.
    pub measurements: &'a [(&'a str, f64)],
}

/// One coordinate: shortest exact decimal ("12", "12.5").
fn number(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    let v = if v == 0.0 { 0.0 } else { v };
    let _ = write!(out, "{v}");
}

fn ring(out: &mut String, points: &[(f64, f64)]) {
    out.push('[');
    // GeoJSON rings repeat the first point at the end.
    for (i, &(x, y)) in points.iter().chain(points.first()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        number(out, x);
        out.push(',');
        number(out, y);
        out.push(']');
    }
    out.push(']');
}

impl<W: Write> FeatureWriter<W> {
    /// Starts the collection.
    pub fn new(mut out: W, style: &FeatureStyle) -> io::Result<FeatureWriter<W>> {
        out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[")?;
        let [r, g, b] = style.color;
        let classification = format!(
            "{{\"name\":{},\"color\":[{r},{g},{b}]}}",
            serde_json::Value::from(style.class.as_str()),
        );
        let properties = format!(
            "{{\"objectType\":{},\"classification\":{classification}}}",
            serde_json::Value::from(style.object_type.as_str()),
        );
        Ok(FeatureWriter { out, properties, classification, features: 0 })
    }

    /// Writes one region as a Polygon feature with the collection's properties.
    pub fn write(&mut self, polygon: &Polygon) -> io::Result<()> {
        let properties = std::mem::take(&mut self.properties);
        let result = self.write_feature(polygon, &properties);
        self.properties = properties;
        result
    }

    /// Writes one region as a Polygon feature with its own type, name and measurements (the class is the
    /// collection's).
    pub fn write_object(&mut self, polygon: &Polygon, object: &ObjectProperties<'_>) -> io::Result<()> {
        use std::fmt::Write as _;
        let mut p = format!(
            "{{\"objectType\":{},\"name\":{},\"classification\":{},\"measurements\":{{",
            serde_json::Value::from(object.object_type),
            serde_json::Value::from(object.name),
            self.classification,
        );
        let mut first = true;
        for &(name, value) in object.measurements.iter().filter(|(_, v)| v.is_finite()) {
            if !first {
                p.push(',');
            }
            first = false;
            let _ = write!(p, "{}:", serde_json::Value::from(name));
            number(&mut p, value);
        }
        p.push_str("}}");
        self.write_feature(polygon, &p)
    }

    fn write_feature(&mut self, polygon: &Polygon, properties: &str) -> io::Result<()> {
        let mut text = String::with_capacity(64 + 16 * polygon.outer.len());
        if self.features > 0 {
            text.push(',');
        }
        text.push_str("\n{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[");
        ring(&mut text, &polygon.outer);
        for hole in &polygon.holes {
            text.push(',');
            ring(&mut text, hole);
        }
        text.push_str("]},\"properties\":");
        text.push_str(properties);
        text.push('}');
        self.out.write_all(text.as_bytes())?;
        self.features += 1;
        Ok(())
    }

    /// Features written so far.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Ends the collection and returns the writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}
