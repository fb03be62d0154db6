//! The one tokeniser of gst-launch text: a template file, a rendered body, or a whole offline
//! description. Every caller that needs to know where an element, a link, a `key=value` or a
//! pad reference is (diagnostics, renaming instances apart, placing pad properties, splitting
//! a description into gst-launch arguments) works on the spans it gives, so all of them read
//! the text the same way.
//!
//! What it knows of the syntax, and why:
//! - Words end at blanks and at `!` outside quotes, as in GStreamer's parser (`a!b` is a link).
//! - `"…"` and `'…'` group blanks and `!` into a word; `\` escapes the next character inside
//!   quotes and out, so `\"` neither opens nor closes a quote. A quote never closed is
//!   reported ([`LexError`]) and its word runs to the end: GStreamer itself accepts it
//!   silently and swallows the rest of the pipeline into one value.
//! - `\` at the end of a line (blanks may follow it) joins the next line, as in a shell.
//! - `#` as the first thing on a line starts a comment to the end of that line: the template
//!   format's header and comment lines. (GStreamer has no comments; rendered text never
//!   holds one, because templates drop their comment lines.)
//! - Blanks are Unicode white space, as callrec has always split template text.
//!
//! Tokens cover the input in order, with byte spans that always fall on character
//! boundaries (the lexer only cuts next to ASCII characters), and lexing never fails: text
//! from an operator or a fuzzer gives tokens and, at worst, an error beside them.

use std::borrow::Cow;
use std::ops::Range;

/// A byte range of the lexed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span as a range, for slicing.
    pub fn range(self) -> Range<usize> {
        self.start..self.end
    }

    /// Whether the span holds no byte.
    pub fn is_empty(self) -> bool {
        self.start >= self.end
    }
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// White space, newlines included.
    Blank,
    /// `\` ending a line (with any blanks after it, and the newline): the next line goes on.
    Continuation,
    /// `#` first on a line, to the end of the line (the newline is not part of it).
    Comment,
    /// `!`: links what comes before to what comes after.
    Link,
    /// A bare word: an element's factory, usually (`matroskamux`).
    Word,
    /// A word that is one quoted string and nothing else (`"a b"`).
    Quoted,
    /// Caps, a media type with any fields: `video/x-raw,format=(string)I420` (quoted when
    /// they hold blanks).
    Caps,
    /// A property set on the element before it: `key=value`, `sink_0::xpos=3`,
    /// `location="a b"`.
    Property {
        /// The key (`sink_0::xpos`).
        key: Span,
        /// The value as written, quotes included; may be empty.
        value: Span,
    },
    /// A reference to a named element's pad: `mux.`, `mux.video_0`.
    PadRef {
        /// The element's name (may be empty: `.pad`).
        element: Span,
        /// The pad's name (empty for `mux.`: any pad that fits).
        pad: Span,
    },
}

/// One token: what it is and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it is in the text.
    pub span: Span,
}

impl Token {
    /// Whether the token is part of the pipeline (not blank, a continuation or a comment).
    pub fn is_word(&self) -> bool {
        !matches!(
            self.kind,
            TokenKind::Blank | TokenKind::Continuation | TokenKind::Comment
        )
    }
}

/// What is wrong with gst-launch text, beside its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    /// A quote that is never closed.
    #[error("unbalanced quote: the {quote} opened at byte {at} is never closed")]
    UnterminatedQuote {
        /// `"` or `'`.
        quote: char,
        /// The byte where it opens.
        at: usize,
    },
}

/// gst-launch text and its tokens.
#[derive(Debug, Clone)]
pub struct LaunchText<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    error: Option<LexError>,
}

impl<'a> LaunchText<'a> {
    /// Lexes `text`. Never fails: see [`LaunchText::error`].
    pub fn lex(text: &'a str) -> Self {
        let mut lexer = Lexer {
            text,
            at: 0,
            line_start: true,
            tokens: vec![],
            error: None,
        };
        lexer.run();
        LaunchText {
            text,
            tokens: lexer.tokens,
            error: lexer.error,
        }
    }

    /// The text lexed.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Every token, in order; together they cover the text.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The first problem found (a quote never closed), if any.
    pub fn error(&self) -> Option<LexError> {
        self.error
    }

    /// The text of a span (empty for a span outside the text).
    pub fn str(&self, span: Span) -> &'a str {
        self.text.get(span.range()).unwrap_or("")
    }

    /// The tokens that are part of the pipeline: no blanks, continuations or comments.
    pub fn words(&self) -> impl Iterator<Item = &Token> + '_ {
        self.tokens.iter().filter(|t| t.is_word())
    }

    /// A property token's key and its value as GStreamer reads it (quotes and escapes
    /// removed); `None` for any other token.
    pub fn property(&self, token: &Token) -> Option<(&'a str, Cow<'a, str>)> {
        match token.kind {
            TokenKind::Property { key, value } => Some((self.str(key), unquote(self.str(value)))),
            _ => None,
        }
    }

    /// The names given with `name=`, in order, each with the span of the name itself (inside
    /// quotes, if it is quoted).
    pub fn names(&self) -> impl Iterator<Item = (Span, Cow<'a, str>)> + '_ {
        self.tokens.iter().filter_map(|t| {
            let TokenKind::Property { key, value } = t.kind else {
                return None;
            };
            (self.str(key) == "name")
                .then(|| (inner(self.str(value), value), unquote(self.str(value))))
        })
    }

    /// The `name=<element>` token, the first if there are several.
    pub fn named(&self, element: &str) -> Option<&Token> {
        self.tokens.iter().find(|t| {
            self.property(t)
                .is_some_and(|(key, value)| key == "name" && value == element)
        })
    }

    /// The words of the text as a shell hands them to `gst-launch-1.0`: split at blanks
    /// outside quotes (a link written without blanks, `a!b`, stays in its word), without
    /// comments and continuations.
    pub fn arguments(&self) -> Vec<&'a str> {
        let mut arguments = vec![];
        let mut current: Option<Span> = None;
        for token in &self.tokens {
            if token.is_word() {
                let span = current.get_or_insert(token.span);
                span.end = token.span.end;
            } else if let Some(span) = current.take() {
                arguments.push(self.str(span));
            }
        }
        arguments.extend(current.map(|span| self.str(span)));
        arguments
    }

    /// The text with every `queue`'s `leaky` set to `no`. Offline work (remix, post, a
    /// rendered command) runs as fast as its slowest element, so a queue that a live mix
    /// lets drop frames to keep up would drop them there for no reason: the encoder is
    /// simply slower than the decoders feeding it.
    pub fn without_leaks(&self) -> String {
        let mut element = "";
        let mut edits = vec![];
        for token in self.words() {
            match token.kind {
                TokenKind::Word => element = self.str(token.span),
                TokenKind::Property { key, value }
                    if element == "queue" && self.str(key) == "leaky" =>
                {
                    edits.push((value, "no".to_owned()));
                }
                TokenKind::Property { .. } => {}
                _ => element = "",
            }
        }
        self.edit(edits)
    }

    /// The text with each `(span, replacement)` put in place of its span; an empty span
    /// inserts. Edits are applied in span order; one that overlaps an earlier one, or falls
    /// outside the text, is left out.
    pub fn edit(&self, mut edits: Vec<(Span, String)>) -> String {
        edits.sort_by_key(|(span, _)| (span.start, span.end));
        let mut out = String::with_capacity(self.text.len());
        let mut from = 0;
        for (span, replacement) in edits {
            if span.start < from || span.end < span.start || self.text.get(span.range()).is_none() {
                continue;
            }
            out.push_str(&self.text[from..span.start]);
            out.push_str(&replacement);
            from = span.end;
        }
        out.push_str(&self.text[from..]);
        out
    }
}

/// One line of a template file, as the template format reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLine<'a> {
    /// Nothing but blanks.
    Blank,
    /// A comment: the text after its `#`, without the blanks that end the line.
    Comment(&'a str),
    /// Pipeline text, trimmed, without the `\` that continues it on the next line.
    Pipeline(&'a str),
}

/// The lines of a template file, numbered from 1, each read as comment, blank or pipeline
/// text from the file's tokens. A `#` line inside a quoted value is part of the value.
pub fn source_lines(text: &str) -> Vec<(usize, SourceLine<'_>)> {
    let lexed = LaunchText::lex(text);
    let mut tokens = lexed.tokens().iter().peekable();
    let mut lines = vec![];
    let mut start = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let end = start + raw.len();
        let (mut comment, mut continuation) = (None, None);
        while let Some(token) = tokens.next_if(|t| t.span.start < end) {
            match token.kind {
                TokenKind::Comment => comment = Some(token.span),
                TokenKind::Continuation => continuation = Some(token.span),
                _ => {}
            }
        }
        let line = if raw.trim().is_empty() {
            SourceLine::Blank
        } else if let Some(span) = comment {
            SourceLine::Comment(lexed.str(span).strip_prefix('#').unwrap_or("").trim_end())
        } else if let Some(span) = continuation {
            SourceLine::Pipeline(text[start..span.start].trim())
        } else {
            SourceLine::Pipeline(raw.trim())
        };
        lines.push((i + 1, line));
        start = end;
    }
    lines
}

/// A value as GStreamer reads it: without the quotes around it, and with `\` escapes
/// resolved.
pub fn unquote(raw: &str) -> Cow<'_, str> {
    let quoted = quoted_inner(raw);
    let body = quoted.unwrap_or(raw);
    if !body.contains('\\') {
        return Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// What is inside `raw` if it is one quoted string and nothing else.
fn quoted_inner(raw: &str) -> Option<&str> {
    let quote = raw.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let end = closing_quote(raw, 1, quote)?;
    (end + 1 == raw.len()).then(|| &raw[1..end])
}

/// The span of what is inside the quotes of `raw` (at `span`), or `span` itself if `raw` is
/// not one quoted string.
fn inner(raw: &str, span: Span) -> Span {
    match quoted_inner(raw) {
        Some(body) => Span {
            start: span.start + 1,
            end: span.start + 1 + body.len(),
        },
        None => span,
    }
}

/// The byte of the quote that closes one opened before `from` in `text`, honouring `\`.
fn closing_quote(text: &str, from: usize, quote: char) -> Option<usize> {
    let mut chars = text.get(from..)?.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == quote {
            return Some(from + i);
        }
    }
    None
}

/// The lexer's state: where it is, and whether only blanks came since the last newline.
struct Lexer<'a> {
    text: &'a str,
    at: usize,
    line_start: bool,
    tokens: Vec<Token>,
    error: Option<LexError>,
}

impl Lexer<'_> {
    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.at;
            let kind = if c.is_whitespace() {
                self.blank()
            } else if c == '#' && self.line_start {
                self.comment()
            } else if let Some(end) = self.continuation_end(start) {
                self.at = end;
                self.line_start = true;
                TokenKind::Continuation
            } else if c == '!' {
                self.at += 1;
                self.line_start = false;
                TokenKind::Link
            } else {
                self.line_start = false;
                self.word()
            };
            self.tokens.push(Token {
                kind,
                span: Span {
                    start,
                    end: self.at,
                },
            });
        }
    }

    fn peek(&self) -> Option<char> {
        self.text.get(self.at..)?.chars().next()
    }

    fn blank(&mut self) -> TokenKind {
        let rest = &self.text[self.at..];
        let len = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        self.line_start |= rest[..len].contains('\n');
        self.at += len;
        TokenKind::Blank
    }

    fn comment(&mut self) -> TokenKind {
        let rest = &self.text[self.at..];
        self.at += rest.find('\n').unwrap_or(rest.len());
        TokenKind::Comment
    }

    /// Where a continuation starting at `at` ends (after its newline), if a `\` there ends
    /// its line: only blanks other than a newline may follow it before the newline or the
    /// end of the text.
    fn continuation_end(&self, at: usize) -> Option<usize> {
        let rest = self.text.get(at..)?.strip_prefix('\\')?;
        let blanks = rest
            .find(|c: char| c == '\n' || !c.is_whitespace())
            .unwrap_or(rest.len());
        let after = &rest[blanks..];
        match after.chars().next() {
            None => Some(self.text.len()),
            Some('\n') => Some(at + 1 + blanks + 1),
            Some(_) => None,
        }
    }

    /// One word: up to a blank, a `!` or a continuation outside quotes.
    fn word(&mut self) -> TokenKind {
        let start = self.at;
        // The first `=` outside quotes, where a property's key ends.
        let mut equals = None;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '!' || self.continuation_end(self.at).is_some() {
                break;
            }
            match c {
                '\\' => {
                    self.at += 1;
                    self.at += self.peek().map_or(0, char::len_utf8);
                }
                '"' | '\'' => match closing_quote(self.text, self.at + 1, c) {
                    Some(close) => self.at = close + 1,
                    None => {
                        self.error.get_or_insert(LexError::UnterminatedQuote {
                            quote: c,
                            at: self.at,
                        });
                        self.at = self.text.len();
                    }
                },
                c => {
                    if c == '=' && equals.is_none() {
                        equals = Some(self.at);
                    }
                    self.at += c.len_utf8();
                }
            }
        }
        classify(
            self.text,
            Span {
                start,
                end: self.at,
            },
            equals,
        )
    }
}

/// What a word is, from its text. `equals` is its first `=` outside quotes.
fn classify(text: &str, span: Span, equals: Option<usize>) -> TokenKind {
    let word = &text[span.range()];
    if is_caps(word) {
        return TokenKind::Caps;
    }
    if let Some(eq) = equals {
        let key = &text[span.start..eq];
        if is_key(key) {
            return TokenKind::Property {
                key: Span {
                    start: span.start,
                    end: eq,
                },
                value: Span {
                    start: eq + 1,
                    end: span.end,
                },
            };
        }
        return TokenKind::Word;
    }
    if quoted_inner(word).is_some() {
        return TokenKind::Quoted;
    }
    let plain = !word.contains(['"', '\'', '\\', '/']);
    match word.find('.') {
        Some(dot) if plain => TokenKind::PadRef {
            element: Span {
                start: span.start,
                end: span.start + dot,
            },
            pad: Span {
                start: span.start + dot + 1,
                end: span.end,
            },
        },
        _ => TokenKind::Word,
    }
}

/// Whether a word is caps: a media type (`type/subtype`), quoted or not, then nothing, or
/// its fields after `,`, `(` (caps features) or `;` (more structures).
fn is_caps(word: &str) -> bool {
    let word = word.strip_prefix(['"', '\'']).unwrap_or(word);
    let media = |c: char| c.is_ascii_alphanumeric() || "+-._".contains(c);
    let Some((kind, rest)) = word.split_once('/') else {
        return false;
    };
    let subtype_len = rest.find(|c: char| !media(c)).unwrap_or(rest.len());
    let after = rest[subtype_len..].chars().next();
    kind.starts_with(|c: char| c.is_ascii_alphabetic())
        && kind.chars().all(media)
        && subtype_len > 0
        && after.is_none_or(|c| ",(;\"' ".contains(c))
}

/// Whether text before `=` is a property key: a name, or `child::name` (a child's or a
/// pad's property).
fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_queues_never_leak() {
        let text =
            "a ! queue leaky=downstream max-size-time=1 ! enc ! queue leaky=2 \\\n ! x leaky=1";
        assert_eq!(
            LaunchText::lex(text).without_leaks(),
            "a ! queue leaky=no max-size-time=1 ! enc ! queue leaky=no \\\n ! x leaky=1"
        );
    }

    /// Each token's kind (without spans) and text.
    fn lexed(text: &str) -> Vec<(String, &str)> {
        let l = LaunchText::lex(text);
        l.tokens()
            .iter()
            .map(|t| {
                let kind = match t.kind {
                    TokenKind::Property { key, value } => {
                        format!("Property({}={})", l.str(key), l.str(value))
                    }
                    TokenKind::PadRef { element, pad } => {
                        format!("PadRef({}.{})", l.str(element), l.str(pad))
                    }
                    other => format!("{other:?}"),
                };
                (kind, l.str(t.span))
            })
            .collect()
    }

    fn kinds(text: &str) -> Vec<String> {
        lexed(text)
            .into_iter()
            .filter(|(k, _)| k != "Blank")
            .map(|(k, _)| k)
            .collect()
    }

    /// The tokens cover the text in order.
    fn covers(text: &str) {
        let l = LaunchText::lex(text);
        let mut at = 0;
        for t in l.tokens() {
            assert_eq!(t.span.start, at, "{text:?}: {:?}", l.tokens());
            assert!(t.span.end > t.span.start, "{text:?}");
            at = t.span.end;
        }
        assert_eq!(at, text.len(), "{text:?}");
    }

    #[test]
    fn elements_links_properties_and_pads() {
        let text = "matroskamux name=mux ! filesink location=/a/b.mkv src ! mux.video_0 demux.";
        assert_eq!(
            kinds(text),
            [
                "Word",
                "Property(name=mux)",
                "Link",
                "Word",
                "Property(location=/a/b.mkv)",
                "Word",
                "Link",
                "PadRef(mux.video_0)",
                "PadRef(demux.)",
            ]
        );
        covers(text);
        // A link needs no blanks around it, and pad properties have `::` in their key.
        assert_eq!(
            kinds("a!b sink_1::xpos=3"),
            ["Word", "Link", "Word", "Property(sink_1::xpos=3)"]
        );
    }

    #[test]
    fn quotes_group_blanks_and_links() {
        let text = r#"textoverlay text="a ! b" font-desc='Sans 12' "just quoted""#;
        assert_eq!(
            kinds(text),
            [
                "Word",
                r#"Property(text="a ! b")"#,
                "Property(font-desc='Sans 12')",
                "Quoted",
            ]
        );
        let l = LaunchText::lex(text);
        let values: Vec<Cow<str>> = l
            .words()
            .filter_map(|t| l.property(t))
            .map(|p| p.1)
            .collect();
        assert_eq!(values, ["a ! b", "Sans 12"]);
        assert_eq!(l.error(), None);
        // A quote of one kind inside the other is a plain character.
        assert_eq!(kinds(r#"a s="it's" t='say "hi"'"#).len(), 3);
        assert_eq!(LaunchText::lex(r#"a s="it's""#).error(), None);
    }

    #[test]
    fn escaped_quotes_neither_open_nor_close() {
        let text = r#"a t="say \"hi\" ! now" u=\"x"#;
        let l = LaunchText::lex(text);
        assert_eq!(l.error(), None);
        assert_eq!(
            kinds(text),
            [
                r"Word",
                r#"Property(t="say \"hi\" ! now")"#,
                r#"Property(u=\"x)"#
            ]
        );
        let values: Vec<Cow<str>> = l
            .words()
            .filter_map(|t| l.property(t))
            .map(|p| p.1)
            .collect();
        assert_eq!(values, [r#"say "hi" ! now"#, r#""x"#]);
        // An escaped blank does not end a word.
        assert_eq!(kinds(r"a b=c\ d"), ["Word", r"Property(b=c\ d)"]);
    }

    #[test]
    fn caps_keep_their_commas_and_parentheses() {
        let text = "a ! video/x-raw,format=(string)I420,width=640,framerate=30/1 ! b \
                    ! video/x-raw(memory:GLMemory),format=RGBA ! \"audio/x-raw, rate=(int)48000\" \
                    ! image/jpeg ! audio/x-raw,format={S16LE,F32LE};audio/x-opus";
        let caps: Vec<&str> = lexed(text)
            .into_iter()
            .filter(|(k, _)| k == "Caps")
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            caps,
            [
                "video/x-raw,format=(string)I420,width=640,framerate=30/1",
                "video/x-raw(memory:GLMemory),format=RGBA",
                "\"audio/x-raw, rate=(int)48000\"",
                "image/jpeg",
                "audio/x-raw,format={S16LE,F32LE};audio/x-opus",
            ]
        );
        covers(text);
        // A path is a value, not caps.
        assert_eq!(
            kinds("f location=/a/b"),
            ["Word", "Property(location=/a/b)"]
        );
    }

    #[test]
    fn continuations_join_lines() {
        let text = "a ! b \\\n  ! c \\  \n! d\\\ne \\";
        assert_eq!(
            lexed(text)
                .into_iter()
                .filter(|(k, _)| k != "Blank")
                .collect::<Vec<_>>(),
            [
                ("Word".into(), "a"),
                ("Link".into(), "!"),
                ("Word".into(), "b"),
                ("Continuation".into(), "\\\n"),
                ("Link".into(), "!"),
                ("Word".into(), "c"),
                ("Continuation".into(), "\\  \n"),
                ("Link".into(), "!"),
                ("Word".into(), "d"),
                ("Continuation".into(), "\\\n"),
                ("Word".into(), "e"),
                ("Continuation".into(), "\\"),
            ]
        );
        covers(text);
        // A backslash before anything else escapes it.
        assert_eq!(kinds(r"a\b"), ["Word"]);
    }

    #[test]
    fn comments_run_to_the_end_of_their_line() {
        let text = "# scope: call\n  # a \"quote\n\ta ! b # not a comment\n#\n";
        let l = LaunchText::lex(text);
        assert_eq!(l.error(), None);
        let comments: Vec<&str> = l
            .tokens()
            .iter()
            .filter(|t| t.kind == TokenKind::Comment)
            .map(|t| l.str(t.span))
            .collect();
        assert_eq!(comments, ["# scope: call", "# a \"quote", "#"]);
        // A `#` after the line's first word is text.
        assert_eq!(kinds("a ! b # c"), ["Word", "Link", "Word", "Word", "Word"]);
        // A comment line may follow a continued line: the template format skips it.
        assert_eq!(kinds("a \\\n# c"), ["Word", "Continuation", "Comment"]);
        assert_eq!(kinds("x=#fff"), ["Property(x=#fff)"]);
        covers(text);
    }

    #[test]
    fn an_unterminated_quote_is_an_error_not_a_panic() {
        for (text, quote, at) in [
            ("a name=\"x ! b", '"', 7),
            ("a t='it\\'s", '\'', 4),
            ("a \"", '"', 2),
            ("a x=\"\\", '"', 4),
        ] {
            let l = LaunchText::lex(text);
            assert_eq!(
                l.error(),
                Some(LexError::UnterminatedQuote { quote, at }),
                "{text}"
            );
            assert!(l.error().unwrap().to_string().contains("never closed"));
            covers(text);
            // The quote swallows the rest, as GStreamer's parser does.
            assert_eq!(l.tokens().last().unwrap().span.end, text.len());
        }
        // Only the first is reported.
        assert_eq!(
            LaunchText::lex("a \"b\n c='d").error(),
            Some(LexError::UnterminatedQuote { quote: '"', at: 2 })
        );
    }

    #[test]
    fn non_ascii_text_keeps_char_boundaries() {
        let text = "textoverlay text=\"日本語 ! Ö\" name=ÖÖ ! 名前.sink_0 ü\u{a0}x # é\n# ß";
        covers(text);
        let l = LaunchText::lex(text);
        for t in l.tokens() {
            assert!(text.is_char_boundary(t.span.start) && text.is_char_boundary(t.span.end));
        }
        let names: Vec<Cow<str>> = l.names().map(|(_, n)| n).collect();
        assert_eq!(names, ["ÖÖ"]);
        assert!(kinds(text).contains(&"PadRef(名前.sink_0)".to_owned()));
        // A non-ASCII blank is a blank.
        assert_eq!(kinds("a\u{3000}b"), ["Word", "Word"]);
    }

    #[test]
    fn names_are_found_inside_their_quotes() {
        let text = "a name=x b name=\"y z\" c name='w'";
        let l = LaunchText::lex(text);
        let names: Vec<(&str, Cow<str>)> = l.names().map(|(s, n)| (l.str(s), n)).collect();
        assert_eq!(
            names,
            [("x", "x".into()), ("y z", "y z".into()), ("w", "w".into())]
        );
        assert_eq!(l.named("y z").map(|t| l.str(t.span)), Some("name=\"y z\""));
        assert!(l.named("v").is_none());
    }

    #[test]
    fn arguments_split_at_blanks_outside_quotes() {
        let l = LaunchText::lex("# c\na name=x !  b p=\"1 2\" \\\n c!d q=\\\"1 2\\\"");
        assert_eq!(
            l.arguments(),
            [
                "a",
                "name=x",
                "!",
                "b",
                "p=\"1 2\"",
                "c!d",
                "q=\\\"1",
                "2\\\""
            ]
        );
        assert!(LaunchText::lex("").arguments().is_empty());
        assert_eq!(LaunchText::lex(" \n ").tokens().len(), 1);
    }

    #[test]
    fn edits_replace_and_insert_by_span() {
        let text = "a name=m ! m.src";
        let l = LaunchText::lex(text);
        let at = |start, end| Span { start, end };
        assert_eq!(
            l.edit(vec![
                (at(12, 12), "_2".into()),
                (at(8, 8), "_2".into()),
                (at(0, 1), "bb".into()),
            ]),
            "bb name=m_2 ! m_2.src"
        );
        // Overlapping and out-of-range edits are left out.
        assert_eq!(
            l.edit(vec![
                (at(0, 4), "x".into()),
                (at(2, 6), "y".into()),
                (at(90, 99), "z".into())
            ]),
            "xme=m ! m.src"
        );
    }

    #[test]
    fn template_lines_are_comments_blanks_or_pipeline() {
        let text = "# scope: call  \n\n  a name=x \\ \r\n  # skipped\n\t! b t=\"c\n# in a quote\" \\\n\\\nend";
        use SourceLine::*;
        assert_eq!(
            source_lines(text),
            [
                (1, Comment(" scope: call")),
                (2, Blank),
                (3, Pipeline("a name=x")),
                (4, Comment(" skipped")),
                (5, Pipeline("! b t=\"c")),
                (6, Pipeline("# in a quote\"")),
                (7, Pipeline("")),
                (8, Pipeline("end")),
            ]
        );
        assert!(source_lines("").is_empty());
        assert_eq!(source_lines("a \\"), [(1, Pipeline("a"))]);
    }

    #[test]
    fn unquote_removes_quotes_and_escapes() {
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(unquote("\"a b\""), "a b");
        assert_eq!(unquote("'a \\' b'"), "a ' b");
        assert_eq!(unquote("a\\ b"), "a b");
        // Not one quoted string: the quotes stay.
        assert_eq!(unquote("\"a\"b"), "\"a\"b");
        assert_eq!(unquote("\""), "\"");
        assert_eq!(unquote("\\"), "");
    }
}
