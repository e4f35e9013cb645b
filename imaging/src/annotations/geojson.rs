//! QuPath's GeoJSON export parsed into [`Annotations`].
//!
//! What QuPath writes (File > Export objects as GeoJSON, or `exportObjectsToGeoJson`): a FeatureCollection,
//! or, without the "FeatureCollection" option and in older versions, an array of Features or one Feature.
//! Each Feature has a `geometry` (Polygon, MultiPolygon, GeometryCollection for some merged shapes, or
//! Point/LineString for point and line annotations) and `properties` with `objectType` (`object_type` in
//! QuPath 0.2), `classification` (`{"name": "Tumor", "color": [r, g, b]}`, `colorRGB` in 0.2, `names` for
//! derived classes), `isLocked`, `measurements`; an `id` beside them. All of these are read or ignored as
//! they come.
//!
//! Accepted: the three top-level forms; Polygon and MultiPolygon, also inside a GeometryCollection; rings
//! closed or not, with repeated points, touching themselves; positions with a third coordinate (ignored).
//! Left out and counted ([`Annotations::skipped`]): features without an area (Point, MultiPoint,
//! LineString, MultiLineString, a null geometry). Refused, one line each: anything else at the top level,
//! an unknown geometry type, coordinates that are not arrays of numbers, non-finite numbers, rings with
//! fewer than three distinct points.

use serde_json::Value;

use super::{describe, Annotation, AnnotationError, Annotations, Bounds, Point, Polygon, Ring};

/// Parses a GeoJSON text as QuPath exports it.
pub fn parse(text: &str) -> Result<Annotations, AnnotationError> {
    let value: Value = serde_json::from_str(text).map_err(|e| AnnotationError::Json(e.to_string()))?;
    parse_value(&value)
}

/// Parses a GeoJSON value (see [`parse`]).
pub fn parse_value(value: &Value) -> Result<Annotations, AnnotationError> {
    let features: Vec<&Value> = match value {
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("FeatureCollection") => match o.get("features") {
                Some(Value::Array(f)) => f.iter().collect(),
                _ => {
                    return Err(AnnotationError::NotFeatureCollection {
                        found: "a FeatureCollection without a \"features\" array".into(),
                    })
                }
            },
            Some("Feature") => vec![value],
            Some(t) => {
                return Err(AnnotationError::NotFeatureCollection { found: format!("a GeoJSON \"{t}\"") })
            }
            None => {
                return Err(AnnotationError::NotFeatureCollection {
                    found: "an object without a \"type\"".into(),
                })
            }
        },
        Value::Array(items) => items.iter().collect(),
        other => {
            return Err(AnnotationError::NotFeatureCollection { found: format!("a JSON {}", kind(other)) })
        }
    };
    let mut out = Annotations::default();
    for (index, feature) in features.into_iter().enumerate() {
        match parse_feature(index, feature)? {
            Some(a) => out.items.push(a),
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One feature; `None` when it has no area.
fn parse_feature(index: usize, feature: &Value) -> Result<Option<Annotation>, AnnotationError> {
    let malformed = |class: Option<&str>, problem: String| AnnotationError::Malformed {
        feature: describe(index, class),
        problem,
    };
    let Value::Object(f) = feature else {
        return Err(malformed(None, format!("is a JSON {}, not a Feature object", kind(feature))));
    };
    if f.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(malformed(None, "has no \"type\": \"Feature\"".into()));
    }
    let properties = f.get("properties").and_then(Value::as_object);
    let class = properties.and_then(|p| p.get("classification")).and_then(class_name);
    let object_type = properties
        .and_then(|p| p.get("objectType").or_else(|| p.get("object_type")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let geometry = f.get("geometry").unwrap_or(&Value::Null);
    let mut polygons = Vec::new();
    geometry_polygons(geometry, &mut polygons, 0).map_err(|problem| malformed(class.as_deref(), problem))?;
    if polygons.is_empty() {
        return Ok(None);
    }
    for (p, polygon) in polygons.iter().enumerate() {
        for (r, ring) in std::iter::once(&polygon.outer).chain(&polygon.holes).enumerate() {
            let distinct = distinct_points(ring);
            if distinct < 3 {
                return Err(AnnotationError::ShortRing {
                    feature: describe(index, class.as_deref()),
                    polygon: p,
                    ring: r,
                    distinct,
                });
            }
        }
    }
    let bounds = polygons.iter().fold(Bounds::EMPTY, |b, p| b.union(p.bounds()));
    Ok(Some(Annotation { class, object_type, polygons, bounds, index }))
}

/// The class name of a `classification` value: `name`, else `names` joined as QuPath shows derived classes
/// ("Tumor: Positive"), else a plain string.
fn class_name(c: &Value) -> Option<String> {
    match c {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            if let Some(name) = o.get("name").and_then(Value::as_str) {
                return Some(name.to_owned());
            }
            let names: Vec<&str> = o.get("names")?.as_array()?.iter().filter_map(Value::as_str).collect();
            (!names.is_empty()).then(|| names.join(": "))
        }
        _ => None,
    }
}

/// Appends the polygons of a geometry; points and lines add nothing. `depth` bounds nested collections.
fn geometry_polygons(g: &Value, out: &mut Vec<Polygon>, depth: usize) -> Result<(), String> {
    if g.is_null() {
        return Ok(());
    }
    let Value::Object(o) = g else {
        return Err(format!("its geometry is a JSON {}, not an object", kind(g)));
    };
    let Some(t) = o.get("type").and_then(Value::as_str) else {
        return Err("its geometry has no \"type\"".into());
    };
    let coordinates =
        || o.get("coordinates").ok_or_else(|| format!("its {t} geometry has no \"coordinates\""));
    match t {
        "Polygon" => out.push(polygon(coordinates()?, t)?),
        "MultiPolygon" => {
            for p in array(coordinates()?, t, "a list of polygons")? {
                out.push(polygon(p, t)?);
            }
        }
        "GeometryCollection" => {
            if depth > 8 {
                return Err("its GeometryCollections nest more than 8 deep".into());
            }
            let Some(Value::Array(parts)) = o.get("geometries") else {
                return Err("its GeometryCollection has no \"geometries\" array".into());
            };
            for part in parts {
                geometry_polygons(part, out, depth + 1)?;
            }
        }
        "Point" | "MultiPoint" | "LineString" | "MultiLineString" => {}
        other => {
            return Err(format!(
                "its geometry type \"{other}\" is not a GeoJSON geometry (Polygon, MultiPolygon, GeometryCollection, Point, LineString)"
            ))
        }
    }
    Ok(())
}

fn array<'a>(v: &'a Value, t: &str, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("its {t} coordinates hold a JSON {} where {what} should be", kind(v)))
}

/// A polygon's coordinates: rings, the first the outer one.
fn polygon(v: &Value, t: &str) -> Result<Polygon, String> {
    let rings = array(v, t, "a list of rings")?;
    let mut parsed = Vec::with_capacity(rings.len());
    for ring in rings {
        parsed.push(parse_ring(ring, t)?);
    }
    let mut parsed = parsed.into_iter();
    let Some(outer) = parsed.next() else {
        return Err(format!("its {t} has a polygon without rings"));
    };
    Ok(Polygon { outer, holes: parsed.collect() })
}

fn parse_ring(v: &Value, t: &str) -> Result<Ring, String> {
    let positions = array(v, t, "a ring (a list of [x, y] positions)")?;
    let mut ring = Vec::with_capacity(positions.len());
    for p in positions {
        let xy = array(p, t, "a position [x, y]")?;
        if xy.len() < 2 {
            return Err(format!("its {t} has a position with {} number(s); a position is [x, y]", xy.len()));
        }
        let number = |n: &Value| -> Result<f64, String> {
            match n.as_f64() {
                Some(f) if f.is_finite() => Ok(f),
                _ => Err(format!("its {t} has the coordinate {n}, which is not a number")),
            }
        };
        ring.push((number(&xy[0])?, number(&xy[1])?));
    }
    Ok(ring)
}

/// Distinct points of a ring, by exact value.
fn distinct_points(ring: &[Point]) -> usize {
    let mut keys: Vec<(u64, u64)> =
        ring.iter().map(|&(x, y)| ((x + 0.0).to_bits(), (y + 0.0).to_bits())).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}
