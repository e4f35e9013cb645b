//! Result tables, printed as aligned text and written as Markdown.

/// One table of the report.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table.
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// Aligned plain text for the terminal.
    pub fn text(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = (0..columns)
                .map(|i| format!("{:<w$}", cells.get(i).map_or("", |c| c), w = widths[i]))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = format!("== {}\n{}\n", self.title, line(&self.header));
        for row in &self.rows {
            out += &line(row);
            out.push('\n');
        }
        for note in &self.notes {
            out += &format!("   {note}\n");
        }
        out
    }

    /// A Markdown section: a level-3 title, the table, the notes as a list.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "### {}\n\n| {} |\n|{}\n",
            self.title,
            self.header.join(" | "),
            "---|".repeat(self.header.len())
        );
        for row in &self.rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out += &format!("- {note}\n");
            }
        }
        out.push('\n');
        out
    }
}

/// Replaces the text between `begin` and `end` markers of `document` with `block` (markers kept), or
/// appends the marked block when the markers are absent.
pub fn splice(document: &str, begin: &str, end: &str, block: &str) -> String {
    match (document.find(begin), document.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{begin}\n{block}{}", &document[..b], &document[e..])
        }
        _ => format!("{}\n{begin}\n{block}{end}\n", document.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_markdown() {
        let mut t = Table::new("T", &["a", "long header"]);
        t.row(vec!["1".into(), "2".into()]);
        t.note("n");
        assert_eq!(t.text(), "== T\na  long header\n1  2\n   n\n");
        assert_eq!(t.markdown(), "### T\n\n| a | long header |\n|---|---|\n| 1 | 2 |\n\n- n\n\n");
    }

    #[test]
    fn splice_keeps_what_is_outside_the_markers() {
        let doc = "head\n<!-- b -->\nold\n<!-- e -->\ntail\n";
        assert_eq!(
            splice(doc, "<!-- b -->", "<!-- e -->", "new\n"),
            "head\n<!-- b -->\nnew\n<!-- e -->\ntail\n"
        );
        assert_eq!(splice("head\n", "<b>", "<e>", "x\n"), "head\n<b>\nx\n<e>\n");
    }
}
