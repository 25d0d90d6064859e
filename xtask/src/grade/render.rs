//! The formats of the grade report: a table for the terminal, Markdown for
//! an instructor (and `$GITHUB_STEP_SUMMARY`), JSON for scripts (the schema
//! of report.rs) and JUnit XML for CI dashboards. Every format is drawn
//! from one [`Report`], and the same report always gives the same text.

use super::report::{Report, StepReport, TestReport};
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use std::io;

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A table for the terminal, then what failed (80 columns)
    #[default]
    Table,
    /// GitHub Markdown, to paste into an issue or a pull request, or for
    /// $GITHUB_STEP_SUMMARY
    Markdown,
    /// JSON, for scripts (the schema tara-grade/1)
    Json,
    /// JUnit XML, for GitLab's test reports and other CI dashboards
    Junit,
}

/// The report written in `format`, ending with a newline.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Markdown => markdown(report),
        Format::Json => json(report),
        Format::Junit => junit(report),
    }
}

/// The name of the file a report in `format` is saved to.
pub fn file_name(format: Format) -> &'static str {
    match format {
        Format::Table => "report.txt",
        Format::Markdown => "report.md",
        Format::Json => "report.json",
        Format::Junit => "report.junit.xml",
    }
}

// ---------------------------------------------------------------------------
// What every format shares

/// Points with at most two decimals and no trailing zeros: 100, 33.33, 22.5.
fn number(value: f64) -> String {
    let fixed = format!("{value:.2}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    match trimmed {
        "-0" => "0".to_string(),
        _ => trimmed.to_string(),
    }
}

/// `Grade: 118.75 of 500 points (23.75 %)`
fn grade_line(report: &Report) -> String {
    format!(
        "Grade: {} of {} points ({} %)",
        number(report.points),
        number(report.max_points),
        number(report.percent)
    )
}

fn failing_tests(step: &StepReport) -> impl Iterator<Item = &TestReport> {
    step.tests.iter().filter(|test| !test.passed)
}

/// Whether a step has something to explain: a failing test, or a crate
/// that does not compile.
fn has_failures(step: &StepReport) -> bool {
    step.compile_error.is_some() || failing_tests(step).next().is_some()
}

/// The reference's name and the first 7 digits of its commit, each passed
/// through `quote`; "the reference" when the report names none.
fn reference(report: &Report, quote: fn(&str) -> String) -> String {
    match &report.against {
        Some(against) => {
            let short_commit = against.commit.get(..7).unwrap_or(&against.commit);
            format!("{} ({})", quote(&against.name), quote(short_commit))
        }
        None => "the reference".to_string(),
    }
}

/// `text` without control characters (the escape sequences of colours,
/// carriage returns) but for newlines and tabs.
fn visible(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect()
}

/// The text of a message without its leading blank lines and trailing
/// whitespace.
fn trimmed_lines(text: &str) -> Vec<&str> {
    text.trim_end()
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .collect()
}

// ---------------------------------------------------------------------------
// Table: the terminal

/// The terminal's width: no line of the table is longer.
const WIDTH: usize = 80;
/// How many lines of a failing test's message the table shows.
const MESSAGE_LINES: usize = 4;
/// How many lines of a compile error the table shows.
const COMPILE_ERROR_LINES: usize = 10;
/// Where a failing test's message starts: under its name, after `  FAIL `.
const MESSAGE_INDENT: &str = "       ";
const COMPILE_ERROR_INDENT: &str = "    ";

fn table(report: &Report) -> String {
    let mut lines = Vec::new();
    if !report.valid {
        lines.extend(tamper_warning(report));
        lines.push(String::new());
    }
    lines.push(grade_line(report));
    lines.push(String::new());
    lines.extend(score_table(report));
    for step in report.steps.iter().filter(|step| has_failures(step)) {
        lines.push(String::new());
        lines.extend(step_failures(step));
    }
    if let Some(hint) = rerun_hint(report) {
        lines.push(String::new());
        lines.extend(hint);
    }
    lines.iter().map(|line| fit(line, WIDTH) + "\n").collect()
}

/// The loud block of an invalid report: which files differ.
fn tamper_warning(report: &Report) -> Vec<String> {
    let rule = "=".repeat(WIDTH);
    let mut lines = vec![
        rule.clone(),
        format!(
            "INVALID: these files differ from {}:",
            reference(report, str::to_string)
        ),
    ];
    lines.extend(report.tampered.iter().map(|file| format!("  {file}")));
    lines.push("The grade below was computed with the reference's copies of those files".into());
    lines.push("put back in their place.".into());
    lines.push(rule);
    lines
}

/// The score of each step and the total, in aligned columns.
fn score_table(report: &Report) -> Vec<String> {
    let steps = &report.steps;
    let mut names: Vec<String> = steps.iter().map(|step| step.step.clone()).collect();
    names.push("Total".into());

    let mut test_counts: Vec<(String, String)> = steps
        .iter()
        .map(|step| (step.passed.to_string(), step.total.to_string()))
        .collect();
    let passed: usize = steps.iter().map(|step| step.passed).sum();
    let total: usize = steps.iter().map(|step| step.total).sum();
    test_counts.push((passed.to_string(), total.to_string()));
    let mut tests = fractions(&test_counts);
    for (cell, step) in tests.iter_mut().zip(steps) {
        if step.compile_error.is_some() {
            *cell = "does not compile".into();
        }
    }

    let mut point_counts: Vec<(String, String)> = steps
        .iter()
        .map(|step| (number(step.points), number(step.max_points)))
        .collect();
    point_counts.push((number(report.points), number(report.max_points)));
    let points = fractions(&point_counts);

    aligned_columns(["Step", "Tests", "Points"], &names, &tests, &points)
}

/// `n / m` for each pair, both sides right-aligned so the slashes line up.
fn fractions(pairs: &[(String, String)]) -> Vec<String> {
    let left = pairs.iter().map(|(n, _)| n.chars().count()).max();
    let right = pairs.iter().map(|(_, m)| m.chars().count()).max();
    let (left, right) = (left.unwrap_or(0), right.unwrap_or(0));
    pairs
        .iter()
        .map(|(n, m)| format!("{n:>left$} / {m:>right$}"))
        .collect()
}

/// A header, a rule, the rows, a rule before the last row (the total). The
/// first column is aligned left, the others right.
fn aligned_columns(
    header: [&str; 3],
    first: &[String],
    second: &[String],
    third: &[String],
) -> Vec<String> {
    let width = |header: &str, cells: &[String]| {
        cells
            .iter()
            .map(|cell| cell.chars().count())
            .chain([header.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths = [
        width(header[0], first),
        width(header[1], second),
        width(header[2], third),
    ];
    let [w0, w1, w2] = widths;
    let row = |a: &str, b: &str, c: &str| format!("{a:<w0$}   {b:>w1$}   {c:>w2$}");
    let rule = "-".repeat(w0 + w1 + w2 + 6);

    let mut lines = vec![row(header[0], header[1], header[2]), rule.clone()];
    for (index, ((a, b), c)) in first.iter().zip(second).zip(third).enumerate() {
        if index + 1 == first.len() {
            lines.push(rule.clone());
        }
        lines.push(row(a, b, c));
    }
    lines
}

/// A step's compile error and failing tests with the start of their
/// messages.
fn step_failures(step: &StepReport) -> Vec<String> {
    let failing = failing_tests(step).count();
    let mut lines = vec![format!(
        "{}: {failing} of {} failing",
        step.step, step.total
    )];
    if let Some(error) = &step.compile_error {
        // Every test fails for the same reason: say it once.
        lines.push("  The crate does not compile, so every test counts as failed:".into());
        lines.extend(excerpt(error, COMPILE_ERROR_LINES, COMPILE_ERROR_INDENT));
        return lines;
    }
    for test in failing_tests(step) {
        lines.push(format!("  FAIL {}", test.name));
        if let Some(message) = &test.message {
            lines.extend(excerpt(message, MESSAGE_LINES, MESSAGE_INDENT));
        }
    }
    lines
}

/// At most `max` lines of `text`, indented; when some are left out, the
/// last line says how many.
fn excerpt(text: &str, max: usize, indent: &str) -> Vec<String> {
    let lines = trimmed_lines(text);
    let shown = if lines.len() > max {
        max - 1
    } else {
        lines.len()
    };
    let mut excerpt: Vec<String> = lines[..shown]
        .iter()
        .map(|line| format!("{indent}{}", printable(line)))
        .collect();
    if lines.len() > shown {
        excerpt.push(format!("{indent}… ({} more lines)", lines.len() - shown));
    }
    excerpt
}

/// `line` without control characters, which would move the terminal's
/// cursor: tabs become spaces, the others are dropped.
fn printable(line: &str) -> String {
    visible(line).replace('\t', "    ")
}

/// `line` cut to `width` characters, its end replaced with `…`.
fn fit(line: &str, width: usize) -> String {
    let line = line.trim_end();
    if line.chars().count() <= width {
        return line.to_string();
    }
    let kept: String = line.chars().take(width - 1).collect();
    kept + "…"
}

/// The command that shows the first failing test in full: its whole
/// output, or its crate's every compile error.
fn rerun_hint(report: &Report) -> Option<Vec<String>> {
    let step = report.steps.iter().find(|step| has_failures(step))?;
    let mut command = format!("  cargo test -p {} --test acceptance", step.package);
    let mut lines = vec!["To see the first failing test in full, run:".to_string()];
    if let Some(test) = failing_tests(step).next() {
        command.push_str(" -- --exact");
        let on_one_line = format!("{command} {}", test.name);
        if on_one_line.chars().count() <= WIDTH {
            command = on_one_line;
        } else {
            lines.push(command + " \\");
            command = format!("    {}", test.name);
        }
    }
    lines.push(command);
    Some(lines)
}

// ---------------------------------------------------------------------------
// Markdown: GitHub's flavour

fn markdown(report: &Report) -> String {
    let mut lines = vec![format!("## {}", grade_line(report)), String::new()];
    if !report.valid {
        lines.extend(markdown_caution(report));
        lines.push(String::new());
    }
    lines.extend(markdown_table(report));
    for step in report.steps.iter().filter(|step| has_failures(step)) {
        lines.push(String::new());
        lines.extend(markdown_details(step));
    }
    lines.join("\n") + "\n"
}

/// A GitHub alert naming the files that differ from the reference.
fn markdown_caution(report: &Report) -> Vec<String> {
    let mut lines = vec![
        "> [!CAUTION]".to_string(),
        format!(
            "> **Invalid**: these files differ from {}:",
            reference(report, inline_code)
        ),
        ">".to_string(),
    ];
    lines.extend(
        report
            .tampered
            .iter()
            .map(|file| format!("> - {}", inline_code(file))),
    );
    lines.push(">".into());
    lines.push(
        "> The grade was computed with the reference's copies of those files put back.".into(),
    );
    lines
}

fn markdown_table(report: &Report) -> Vec<String> {
    let mut lines = vec![
        "| Step | Tests | Points |".to_string(),
        "| :--- | ---: | ---: |".to_string(),
    ];
    for step in &report.steps {
        let tests = match step.compile_error {
            Some(_) => "does not compile".to_string(),
            None => format!("{} / {}", step.passed, step.total),
        };
        let points = format!("{} / {}", number(step.points), number(step.max_points));
        lines.push(markdown_row(&step.step, &tests, &points));
    }
    let passed: usize = report.steps.iter().map(|step| step.passed).sum();
    let total: usize = report.steps.iter().map(|step| step.total).sum();
    lines.push(markdown_row(
        "**Total**",
        &format!("{passed} / {total}"),
        &format!("{} / {}", number(report.points), number(report.max_points)),
    ));
    lines
}

/// A table row; a `|` in a cell is escaped so it does not end the cell.
fn markdown_row(step: &str, tests: &str, points: &str) -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    format!("| {} | {} | {} |", cell(step), cell(tests), cell(points))
}

/// A folded section: the compile error, then each failing test with its
/// message.
fn markdown_details(step: &StepReport) -> Vec<String> {
    let failing = failing_tests(step).count();
    let mut summary = format!("{}: {failing} failing", step.step);
    if step.compile_error.is_some() {
        summary.push_str(", does not compile");
    }
    let mut lines = vec![
        format!("<details><summary>{}</summary>", html_text(&summary)),
        String::new(),
    ];
    let failing_tests = match &step.compile_error {
        Some(error) => {
            // Every test fails for the same reason: say it once.
            lines.push("The crate does not compile, so every test counts as failed:".into());
            lines.push(String::new());
            lines.extend(code_block(error, ""));
            lines.push(String::new());
            None
        }
        None => Some(failing_tests(step)),
    };
    for test in failing_tests.into_iter().flatten() {
        lines.push(format!("- {}", inline_code(&test.name)));
        lines.push(String::new());
        if let Some(message) = &test.message {
            lines.extend(code_block(message, "  "));
            lines.push(String::new());
        }
    }
    lines.push("</details>".into());
    lines
}

/// `text` escaped for HTML (the `<summary>` element).
fn html_text(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// The longest run of backticks in `text`.
fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `text` as inline code, in more backticks than it holds in a row.
fn inline_code(text: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// `text` in a fenced code block, every line indented by `indent` (to sit
/// in a list item). The fence is longer than any run of backticks in
/// `text`, so nothing in it can close the block early.
fn code_block(text: &str, indent: &str) -> Vec<String> {
    let fence = "`".repeat((longest_backtick_run(text) + 1).max(3));
    let text = visible(text);
    let mut lines = vec![format!("{indent}{fence}")];
    lines.extend(trimmed_lines(&text).into_iter().map(|line| {
        if line.is_empty() {
            String::new()
        } else {
            format!("{indent}{line}")
        }
    }));
    lines.push(format!("{indent}{fence}"));
    lines
}

// ---------------------------------------------------------------------------
// JSON: the schema of report.rs

fn json(report: &Report) -> String {
    let json = serde_json::to_string_pretty(report).expect("a report always serializes");
    json + "\n"
}

// ---------------------------------------------------------------------------
// JUnit XML: GitLab, Jenkins and other dashboards

/// A `<testsuite>`: a step, or the tamper check.
struct Suite {
    name: String,
    properties: Vec<(&'static str, String)>,
    cases: Vec<Case>,
}

/// A `<testcase>`; `problem` is why it did not pass.
struct Case {
    classname: String,
    name: String,
    problem: Option<Problem>,
}

/// A `<failure>` (the test ran and failed) or an `<error>` (it could not run).
struct Problem {
    element: &'static str,
    kind: &'static str,
    message: String,
    details: String,
}

impl Suite {
    fn count(&self, element: &str) -> usize {
        self.cases
            .iter()
            .filter(|case| case.problem.as_ref().map(|problem| problem.element) == Some(element))
            .count()
    }
}

fn junit(report: &Report) -> String {
    let mut suites = Vec::new();
    if !report.valid {
        suites.push(tamper_suite(report));
    }
    suites.extend(report.steps.iter().map(step_suite));

    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_junit(&mut writer, &suites).expect("writing to memory does not fail");
    let xml = String::from_utf8(writer.into_inner()).expect("quick-xml writes UTF-8");
    xml + "\n"
}

/// The tamper check as a failing test, so that dashboards show it.
fn tamper_suite(report: &Report) -> Suite {
    let problem = Problem {
        element: "failure",
        kind: "files differ",
        message: format!(
            "{} files differ from {}",
            report.tampered.len(),
            reference(report, str::to_string)
        ),
        details: report.tampered.join("\n"),
    };
    Suite {
        name: "tamper-check".into(),
        properties: vec![],
        cases: vec![Case {
            classname: "tamper-check".into(),
            name: "files-match-the-reference".into(),
            problem: Some(problem),
        }],
    }
}

/// A step's tests; when its crate does not compile, each is an error (and
/// a step without tests gets one, `build`, to carry the compile error).
fn step_suite(step: &StepReport) -> Suite {
    let case = |name: &str, problem: Option<Problem>| Case {
        classname: step.package.clone(),
        name: name.to_string(),
        problem,
    };
    let cases = match &step.compile_error {
        Some(error) if step.tests.is_empty() => vec![case("build", Some(compile_problem(error)))],
        Some(error) => step
            .tests
            .iter()
            .map(|test| case(&test.name, Some(compile_problem(error))))
            .collect(),
        None => step
            .tests
            .iter()
            .map(|test| case(&test.name, test_problem(test)))
            .collect(),
    };
    Suite {
        name: step.step.clone(),
        properties: vec![
            ("points", number(step.points)),
            ("max_points", number(step.max_points)),
        ],
        cases,
    }
}

fn compile_problem(error: &str) -> Problem {
    Problem {
        element: "error",
        kind: "compile error",
        message: "the crate does not compile".into(),
        details: error.to_string(),
    }
}

/// A failed test's first line as the summary, its whole message as the
/// details; none when it passed.
fn test_problem(test: &TestReport) -> Option<Problem> {
    if test.passed {
        return None;
    }
    let message = test.message.as_deref().unwrap_or_default();
    let first_line = trimmed_lines(message).first().map(|line| line.trim());
    Some(Problem {
        element: "failure",
        kind: "test failed",
        message: first_line.unwrap_or("the test failed").to_string(),
        details: message.to_string(),
    })
}

fn write_junit(writer: &mut Writer<Vec<u8>>, suites: &[Suite]) -> io::Result<()> {
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let tests: usize = suites.iter().map(|suite| suite.cases.len()).sum();
    let failures: usize = suites.iter().map(|suite| suite.count("failure")).sum();
    let errors: usize = suites.iter().map(|suite| suite.count("error")).sum();
    writer
        .create_element("testsuites")
        .with_attributes([
            ("name", "tara grade"),
            ("tests", &tests.to_string()),
            ("failures", &failures.to_string()),
            ("errors", &errors.to_string()),
        ])
        .write_inner_content(|writer| {
            suites
                .iter()
                .try_for_each(|suite| write_suite(writer, suite))
        })?;
    Ok(())
}

fn write_suite(writer: &mut Writer<Vec<u8>>, suite: &Suite) -> io::Result<()> {
    writer
        .create_element("testsuite")
        .with_attributes([
            ("name", xml_text(&suite.name).as_str()),
            ("tests", &suite.cases.len().to_string()),
            ("failures", &suite.count("failure").to_string()),
            ("errors", &suite.count("error").to_string()),
        ])
        .write_inner_content(|writer| {
            write_properties(writer, &suite.properties)?;
            suite
                .cases
                .iter()
                .try_for_each(|case| write_case(writer, case))
        })?;
    Ok(())
}

fn write_properties(
    writer: &mut Writer<Vec<u8>>,
    properties: &[(&'static str, String)],
) -> io::Result<()> {
    if properties.is_empty() {
        return Ok(());
    }
    writer
        .create_element("properties")
        .write_inner_content(|writer| {
            for (name, value) in properties {
                writer
                    .create_element("property")
                    .with_attributes([("name", *name), ("value", xml_text(value).as_str())])
                    .write_empty()?;
            }
            Ok(())
        })?;
    Ok(())
}

fn write_case(writer: &mut Writer<Vec<u8>>, case: &Case) -> io::Result<()> {
    let element = writer.create_element("testcase").with_attributes([
        ("classname", xml_text(&case.classname).as_str()),
        ("name", xml_text(&case.name).as_str()),
    ]);
    match &case.problem {
        None => element.write_empty()?,
        Some(problem) => element.write_inner_content(|writer| write_problem(writer, problem))?,
    };
    Ok(())
}

fn write_problem(writer: &mut Writer<Vec<u8>>, problem: &Problem) -> io::Result<()> {
    let element = writer.create_element(problem.element).with_attributes([
        ("message", xml_text(&problem.message).as_str()),
        ("type", problem.kind),
    ]);
    let details = xml_text(&problem.details);
    if details.is_empty() {
        element.write_empty()?;
    } else {
        element.write_text_content(BytesText::new(&details))?;
    }
    Ok(())
}

/// `text` without the characters XML 1.0 forbids: the control characters
/// other than tab, newline and carriage return, and U+FFFE and U+FFFF.
/// (quick-xml escapes `<`, `&` and quotes; it cannot escape these.)
fn xml_text(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !matches!(
                c,
                '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}'
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::config::GradingConfig;
    use crate::grade::report::{Reference, StepOutcome, TestOutcome};
    use quick_xml::events::attributes::Attribute;
    use quick_xml::Reader;

    const ASSERT_EQ_MESSAGE: &str =
        "assertion `left == right` failed: /proc lists the host's processes\n  \
         left: 1\n right: 214";
    const TRICKY_MESSAGE: &str = "`| grep proc` found <&> in \"mountinfo\":\n\
         ```\n\
         shared:1 master:2 - proc proc rw,nosuid,nodev,noexec,relatime,hidepid=invisible,subset=pid\n\
         ```\n\
         the table of mounts is shared with the host\n\
         (propagation must be private)\u{1b}[0m";
    const COMPILE_ERROR: &str = "error[E0425]: cannot find value `new_root` in this scope\n  \
         --> src/lib.rs:12:9\n   |\n\
         12 |     pivot_root(&new_root, &old)?;\n   |                \
         ^^^^^^^^ not found in this scope\n\n\
         error[E0308]: mismatched types\n  --> src/lib.rs:20:5\n   |\n\
         20 |     Ok(())\n   |     ^^^^^^ expected `Pid`, found `()`\n\n\
         error: aborting due to 2 previous errors";

    fn passing(name: &str) -> TestOutcome {
        TestOutcome {
            name: name.into(),
            passed: true,
            message: None,
        }
    }

    fn failing(name: &str, message: Option<&str>) -> TestOutcome {
        TestOutcome {
            name: name.into(),
            passed: false,
            message: message.map(str::to_string),
        }
    }

    /// Three steps: one passes, one has two failing tests, one does not
    /// compile.
    fn sample(tampered: &[&str]) -> Report {
        let outcomes = vec![
            StepOutcome {
                step: "01-unshare-pid".into(),
                compile_error: None,
                tests: vec![
                    passing("the_command_is_pid_1"),
                    passing("the_hostname_changes_inside_only"),
                ],
            },
            StepOutcome {
                step: "02-mount-proc".into(),
                compile_error: None,
                tests: vec![
                    passing("ps_sees_only_the_container"),
                    failing("proc_shows_only_the_container", Some(ASSERT_EQ_MESSAGE)),
                    failing(
                        "the_table_of_mounts_is_private_to_the_container",
                        Some(TRICKY_MESSAGE),
                    ),
                    passing("proc_is_unmounted_on_exit"),
                ],
            },
            StepOutcome {
                step: "03-pivot-root".into(),
                compile_error: Some(COMPILE_ERROR.into()),
                tests: vec![
                    failing("the_old_root_is_gone", None),
                    failing("the_new_root_is_slash", None),
                ],
            },
        ];
        let config = GradingConfig::parse(
            "[steps.02-mount-proc]\npoints = 50\n\
             [steps.02-mount-proc.weights]\nproc_is_unmounted_on_exit = 0.5\n",
        )
        .unwrap();
        let against = Reference {
            name: "v1.0".into(),
            commit: "3f5c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39".into(),
        };
        let tampered = tampered.iter().map(|file| file.to_string()).collect();
        Report::score(outcomes, &config, Some(against), tampered)
    }

    fn valid() -> Report {
        sample(&[])
    }

    fn invalid() -> Report {
        sample(&["grading.toml", "steps/02-mount-proc/tests/acceptance.rs"])
    }

    #[test]
    fn points_show_at_most_two_decimals() {
        assert_eq!(number(100.0), "100");
        assert_eq!(number(33.33), "33.33");
        assert_eq!(number(22.5), "22.5");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(-0.0), "0");
    }

    #[test]
    fn each_format_has_its_file() {
        assert_eq!(file_name(Format::Table), "report.txt");
        assert_eq!(file_name(Format::Markdown), "report.md");
        assert_eq!(file_name(Format::Json), "report.json");
        assert_eq!(file_name(Format::Junit), "report.junit.xml");
    }

    #[test]
    fn table_valid() {
        insta::assert_snapshot!(render(&valid(), Format::Table));
    }

    #[test]
    fn table_invalid() {
        insta::assert_snapshot!(render(&invalid(), Format::Table));
    }

    #[test]
    fn the_table_fits_80_columns() {
        for report in [valid(), invalid()] {
            for line in render(&report, Format::Table).lines() {
                assert!(line.chars().count() <= 80, "too long: {line:?}");
            }
        }
    }

    #[test]
    fn the_table_starts_with_the_grade_unless_invalid() {
        let table = render(&valid(), Format::Table);
        assert!(
            table.starts_with("Grade: 121.43 of 250 points (48.57 %)\n"),
            "{table}"
        );
        let table = render(&invalid(), Format::Table);
        assert!(table.contains("INVALID: these files differ from v1.0 (3f5c2a9):"));
    }

    #[test]
    fn markdown_valid() {
        insta::assert_snapshot!(render(&valid(), Format::Markdown));
    }

    #[test]
    fn markdown_invalid() {
        insta::assert_snapshot!(render(&invalid(), Format::Markdown));
    }

    #[test]
    fn inline_code_outlasts_the_backticks_inside() {
        assert_eq!(inline_code("a.rs"), "`a.rs`");
        assert_eq!(inline_code("a`b"), "``a`b``");
        assert_eq!(inline_code("`a`"), "`` `a` ``");
    }

    #[test]
    fn json_valid() {
        insta::assert_snapshot!(render(&valid(), Format::Json));
    }

    #[test]
    fn json_invalid() {
        insta::assert_snapshot!(render(&invalid(), Format::Json));
    }

    #[test]
    fn junit_invalid() {
        insta::assert_snapshot!(render(&invalid(), Format::Junit));
    }

    /// What a JUnit reader sees: the attributes of `<testsuites>`, how many
    /// of each element there are, and the failures' messages and texts.
    #[derive(Debug, Default)]
    struct JunitSummary {
        totals: Vec<(String, String)>,
        testcases: usize,
        failures: Vec<(String, String)>,
        errors: usize,
    }

    fn attribute_pairs<'a>(
        attributes: impl Iterator<Item = Attribute<'a>>,
    ) -> Vec<(String, String)> {
        attributes
            .map(|attribute| {
                let key = String::from_utf8(attribute.key.as_ref().to_vec()).unwrap();
                (key, attribute.unescape_value().unwrap().into_owned())
            })
            .collect()
    }

    fn read_junit(xml: &str) -> JunitSummary {
        let mut reader = Reader::from_str(xml);
        let mut summary = JunitSummary::default();
        let mut in_failure = false;
        loop {
            let (element, attributes) = match reader.read_event().unwrap() {
                Event::Eof => return summary,
                Event::Start(start) => {
                    in_failure = start.name().as_ref() == b"failure";
                    (
                        start.name().as_ref().to_vec(),
                        attribute_pairs(start.attributes().map(Result::unwrap)),
                    )
                }
                Event::Empty(empty) => (
                    empty.name().as_ref().to_vec(),
                    attribute_pairs(empty.attributes().map(Result::unwrap)),
                ),
                Event::End(_) => {
                    in_failure = false;
                    continue;
                }
                Event::Text(text) if in_failure => {
                    summary.failures.last_mut().unwrap().1 += &text.decode().unwrap();
                    continue;
                }
                Event::GeneralRef(reference) if in_failure => {
                    let name = reference.decode().unwrap();
                    let resolved = quick_xml::escape::resolve_xml_entity(&name).unwrap();
                    summary.failures.last_mut().unwrap().1 += resolved;
                    continue;
                }
                _ => continue,
            };
            match element.as_slice() {
                b"testsuites" => summary.totals = attributes,
                b"testcase" => summary.testcases += 1,
                b"failure" => {
                    let message = attributes.into_iter().find(|(key, _)| key == "message");
                    summary.failures.push((message.unwrap().1, String::new()));
                }
                b"error" => summary.errors += 1,
                _ => {}
            }
        }
    }

    #[test]
    fn junit_counts_add_up() {
        let summary = read_junit(&render(&invalid(), Format::Junit));
        let totals: Vec<(&str, &str)> = summary
            .totals
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            totals,
            [
                ("name", "tara grade"),
                ("tests", "9"),
                ("failures", "3"),
                ("errors", "2")
            ]
        );
        assert_eq!(summary.testcases, 9);
        assert_eq!(summary.failures.len(), 3);
        assert_eq!(summary.errors, 2);

        let summary = read_junit(&render(&valid(), Format::Junit));
        assert_eq!(summary.testcases, 8);
        assert_eq!(summary.failures.len(), 2);
    }

    #[test]
    fn junit_messages_round_trip() {
        let summary = read_junit(&render(&valid(), Format::Junit));
        let (message, text) = &summary.failures[1];
        assert_eq!(message, "`| grep proc` found <&> in \"mountinfo\":");
        let without_escape = TRICKY_MESSAGE.replace('\u{1b}', "");
        assert_eq!(text, &without_escape);
        let (message, text) = &summary.failures[0];
        assert_eq!(
            message,
            "assertion `left == right` failed: /proc lists the host's processes"
        );
        assert_eq!(text, ASSERT_EQ_MESSAGE);
    }

    #[test]
    fn a_step_without_tests_that_does_not_compile_is_one_error() {
        let outcome = StepOutcome {
            step: "04-cgroups".into(),
            compile_error: Some("error: expected `;`".into()),
            tests: vec![],
        };
        let report = Report::score(vec![outcome], &GradingConfig::default(), None, vec![]);
        let xml = render(&report, Format::Junit);
        assert!(
            xml.contains(r#"<testcase classname="step-04-cgroups" name="build">"#),
            "{xml}"
        );
        assert_eq!(read_junit(&xml).errors, 1);
    }
}
