//! Tables byte-identical to StarlingX's `system` CLI, which prints with Python PrettyTable
//! configured as cgts-client does: `+---+` borders, a header row, one space of padding, every
//! column left-aligned (the header too). A cell holding newlines spans several lines, as in
//! PrettyTable. The strings returned carry no trailing newline (PrettyTable's `get_string`).

/// A list table. With no rows it prints the frame and the header, as PrettyTable does with
/// `print_empty=True` (cgts-client would print an empty line; a header tells more).
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| block_width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(block_width(cell));
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
    let mut out = vec![rule.clone()];
    push_row(&mut out, headers, &widths);
    out.push(rule.clone());
    for row in rows {
        // A short row gets empty cells; extra cells are dropped (rows are built by us).
        let cells: Vec<&str> = (0..columns)
            .map(|i| row.get(i).map_or("", String::as_str))
            .collect();
        push_row(&mut out, &cells, &widths);
    }
    out.push(rule);
    out.join("\n")
}

/// A `Property | Value` table in the order given, as cgts-client's `print_tuple_list` prints.
pub fn properties(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.clone()])
        .collect();
    render(&["Property", "Value"], &rows)
}

/// One logical row, as many text lines as its tallest cell (cells are top-aligned).
fn push_row<S: AsRef<str>>(out: &mut Vec<String>, cells: &[S], widths: &[usize]) {
    let split: Vec<Vec<&str>> = cells.iter().map(|c| lines(c.as_ref())).collect();
    let height = split.iter().map(Vec::len).max().unwrap_or(1);
    for i in 0..height {
        let padded: Vec<String> = split
            .iter()
            .zip(widths)
            .map(|(cell, w)| {
                let text = cell.get(i).copied().unwrap_or("");
                format!(" {text}{} ", " ".repeat(w - text_width(text)))
            })
            .collect();
        out.push(format!("|{}|", padded.join("|")));
    }
}

/// PrettyTable splits on `\n` only; an empty cell is still one (blank) line.
fn lines(cell: &str) -> Vec<&str> {
    cell.split('\n').collect()
}

fn block_width(cell: &str) -> usize {
    lines(cell).into_iter().map(text_width).max().unwrap_or(0)
}

/// Characters, not bytes: names and reasons may hold non-ASCII text.
fn text_width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[&[&str]]) -> Vec<Vec<String>> {
        cells
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn matches_the_seeds_version_table() {
        let rows = rows(&[
            &["v1.16.1", "True", "active"],
            &["v1.16.2", "False", "available"],
        ]);
        assert_eq!(
            render(&["Version", "Target", "State"], &rows),
            "+---------+--------+-----------+\n\
             | Version | Target | State     |\n\
             +---------+--------+-----------+\n\
             | v1.16.1 | True   | active    |\n\
             | v1.16.2 | False  | available |\n\
             +---------+--------+-----------+"
        );
    }

    // Expected strings below were produced by Python PrettyTable 3.18 with
    // `PrettyTable(fields, caching=False, print_empty=...)` and `align = 'l'`.

    #[test]
    fn empty_list_prints_frame_and_header_like_print_empty_true() {
        assert_eq!(
            render(&["id", "hostname"], &[]),
            "+----+----------+\n| id | hostname |\n+----+----------+\n+----+----------+"
        );
    }

    #[test]
    fn multi_line_cells_span_lines_and_empty_cells_stay_blank() {
        let rows = rows(&[
            &["a", "line1\nlonger line2"],
            &["b\nc", "None"],
            &["f", ""],
            &["ü", "naïve"],
        ]);
        assert_eq!(
            render(&["Property", "Value"], &rows),
            "+----------+--------------+\n\
             | Property | Value        |\n\
             +----------+--------------+\n\
             | a        | line1        |\n\
             |          | longer line2 |\n\
             | b        | None         |\n\
             | c        |              |\n\
             | f        |              |\n\
             | ü        | naïve        |\n\
             +----------+--------------+"
        );
    }

    #[test]
    fn properties_keep_the_given_order() {
        let t = properties(&[("b", "1".into()), ("a", "2".into())]);
        assert_eq!(
            t,
            "+----------+-------+\n\
             | Property | Value |\n\
             +----------+-------+\n\
             | b        | 1     |\n\
             | a        | 2     |\n\
             +----------+-------+"
        );
    }
}
