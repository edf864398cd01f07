//! Tables in the style of StarlingX's `system` CLI (PrettyTable: `+---+` borders, one space of
//! padding, left-aligned cells).

pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("|{}|", padded.join("|"))
    };
    let mut out = vec![rule.clone(), line(headers.to_vec()), rule.clone()];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.push(rule);
    out.join("\n")
}

/// A `Property | Value` table, as `system ...-show` commands print.
pub fn properties(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.clone()])
        .collect();
    render(&["Property", "Value"], &rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_seeds_version_table() {
        let rows = vec![
            vec!["v1.16.1".into(), "True".into(), "active".into()],
            vec!["v1.16.2".into(), "False".into(), "available".into()],
        ];
        assert_eq!(
            super::render(&["Version", "Target", "State"], &rows),
            "+---------+--------+-----------+\n\
             | Version | Target | State     |\n\
             +---------+--------+-----------+\n\
             | v1.16.1 | True   | active    |\n\
             | v1.16.2 | False  | available |\n\
             +---------+--------+-----------+"
        );
    }
}
