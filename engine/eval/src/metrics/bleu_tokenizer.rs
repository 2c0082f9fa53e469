//! sacrebleu's tokenizers, reproduced exactly: `13a` (mteval-v13a, sacrebleu's default) and
//! `zh` (each CJK character a token, the rest as `13a`).

/// How BLEU splits text into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BleuTokenizer {
    /// sacrebleu's default `13a` tokenizer.
    #[default]
    Mteval13a,
    /// sacrebleu's `zh` tokenizer, for Chinese (CPsyCoun's language).
    Zh,
}

impl BleuTokenizer {
    /// The tokenized line, tokens separated by single spaces (as sacrebleu returns it).
    pub fn tokenize(self, line: &str) -> String {
        match self {
            BleuTokenizer::Mteval13a => tokenize_13a(line),
            BleuTokenizer::Zh => tokenize_zh(line),
        }
    }
}

fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    post_tokenize(&format!(" {line} "))
}

fn tokenize_zh(line: &str) -> String {
    let mut spaced = String::new();
    for c in py_strip(line).chars() {
        if is_zh_char(c) {
            spaced.push(' ');
            spaced.push(c);
            spaced.push(' ');
        } else {
            spaced.push(c);
        }
    }
    post_tokenize(&spaced)
}

/// sacrebleu's `_UCODE_RANGES`. Two of its entries are written `u'\u20000'` and `u'\u2f800'`
/// in Python, which are two-character strings; compared with one character they make the
/// ranges U+2001..=U+2A6D and U+2F81..=U+2FA1, which is what sacrebleu computes and is kept here.
const ZH_RANGES: &[(u32, u32)] = &[
    (0x3400, 0x4db5),
    (0x4e00, 0x9fa5),
    (0x9fa6, 0x9fbb),
    (0xf900, 0xfa2d),
    (0xfa30, 0xfa6a),
    (0xfa70, 0xfad9),
    (0x2001, 0x2a6d),
    (0x2f81, 0x2fa1),
    (0xff00, 0xffef),
    (0x2e80, 0x2eff),
    (0x3000, 0x303f),
    (0x31c0, 0x31ef),
    (0x2f00, 0x2fdf),
    (0x2ff0, 0x2fff),
    (0x3100, 0x312f),
    (0x31a0, 0x31bf),
    (0xfe10, 0xfe1f),
    (0xfe30, 0xfe4f),
    (0x2600, 0x26ff),
    (0x2700, 0x27bf),
    (0x3200, 0x32ff),
    (0x3300, 0x33ff),
];

fn is_zh_char(c: char) -> bool {
    let u = c as u32;
    ZH_RANGES.iter().any(|&(lo, hi)| lo <= u && u <= hi)
}

/// Python's `str.isspace` (it also counts U+001C..U+001F, which Rust does not).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// Python's `str.split()`.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_space).filter(|t| !t.is_empty())
}

/// Python's `str.rstrip()`.
pub(crate) fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_space)
}

/// sacrebleu's `TokenizerRegexp`: four regex substitutions applied in turn, each scanning
/// left to right without overlap as Python's `re.sub` does, then whitespace collapsed.
fn post_tokenize(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
    let mut a = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            a.extend([' ', c, ' ']);
        } else {
            a.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let period_or_comma = |c: char| c == '.' || c == ',';
    // ([^0-9])([\.,]) -> "\1 \2 "
    let b = substitute_pairs(
        &a,
        |x, y| !digit(x) && period_or_comma(y),
        |x, y| vec![x, ' ', y, ' '],
    );
    // ([\.,])([^0-9]) -> " \1 \2"
    let c = substitute_pairs(
        &b,
        |x, y| period_or_comma(x) && !digit(y),
        |x, y| vec![' ', x, ' ', y],
    );
    // ([0-9])(-) -> "\1 \2 "
    let d = substitute_pairs(&c, |x, y| digit(x) && y == '-', |x, y| vec![x, ' ', y, ' ']);
    let s: String = d.into_iter().collect();
    py_split(&s).collect::<Vec<_>>().join(" ")
}

/// `re.sub` for a two-character pattern: matches are found left to right and do not overlap.
fn substitute_pairs(
    input: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 2);
    let mut i = 0;
    while i < input.len() {
        if i + 1 < input.len() && matches(input[i], input[i + 1]) {
            out.extend(replace(input[i], input[i + 1]));
            i += 2;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}
