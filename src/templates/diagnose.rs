//! Turns what is wrong with a template into an operator's message: which line of the file,
//! and for a missing element, which Debian package usually provides it.
//!
//! GStreamer's parser sees the template as one line of text, so its errors name an element
//! or a property but no line; these helpers find the line in the file again.

use gst::prelude::*;

use super::launch_text::{LaunchText, LexError, Token};

/// A template body line: its number in the file and its text.
pub type Line = (usize, String);

/// A template's body lines lexed as one text (quotes may span lines), with where each line
/// starts in it, so a token can be traced back to its line.
struct Body {
    text: String,
    /// `(byte where the line starts in text, the line's number)`, in order.
    starts: Vec<(usize, usize)>,
}

impl Body {
    fn new(lines: &[Line]) -> Self {
        let mut text = String::new();
        let mut starts = Vec::with_capacity(lines.len());
        for (number, line) in lines {
            if !text.is_empty() {
                text.push('\n');
            }
            starts.push((text.len(), *number));
            text.push_str(line);
        }
        Body { text, starts }
    }

    /// The number of the line that byte `at` is on.
    fn line_at(&self, at: usize) -> usize {
        let i = self.starts.partition_point(|(start, _)| *start <= at);
        self.starts
            .get(i.saturating_sub(1))
            .map(|(_, n)| *n)
            .unwrap_or(1)
    }

    /// The line of the first word for which `matches` holds.
    fn find(&self, mut matches: impl FnMut(&LaunchText, &Token) -> bool) -> Option<usize> {
        let lexed = LaunchText::lex(&self.text);
        let found = lexed.words().find(|t| matches(&lexed, t));
        found.map(|t| self.line_at(t.span.start))
    }
}

/// The first quote that is never closed, as `(line, message)`. GStreamer's parser accepts
/// an unbalanced quote silently and swallows the rest of the pipeline into one value.
pub fn unbalanced_quote(lines: &[Line]) -> Option<(usize, String)> {
    let body = Body::new(lines);
    match LaunchText::lex(&body.text).error()? {
        LexError::UnterminatedQuote { quote, at } => Some((
            body.line_at(at),
            format!("unbalanced quote: the {quote} opened on this line is never closed"),
        )),
    }
}

/// Whether a word is `element` itself, or names it with `name=`.
fn is_element(lexed: &LaunchText, token: &Token, element: &str) -> bool {
    lexed.str(token.span) == element
        || lexed
            .property(token)
            .is_some_and(|(key, value)| key == "name" && value == element)
}

/// The line where an element of this factory (or with this `name=`) is written.
pub fn line_of_element(lines: &[Line], element: &str) -> Option<usize> {
    let body = Body::new(lines);
    body.find(|lexed, t| is_element(lexed, t, element))
        .or_else(|| {
            // GStreamer names unnamed elements after their factory: x264enc0, x264enc1...
            let factory = element.trim_end_matches(|c: char| c.is_ascii_digit());
            (factory != element)
                .then(|| body.find(|lexed, t| lexed.str(t.span) == factory))
                .flatten()
        })
}

/// The line where `property=` is set (on an element, or as `child::property=`).
pub fn line_of_property(lines: &[Line], property: &str) -> Option<usize> {
    Body::new(lines).find(|lexed, t| {
        lexed.property(t).is_some_and(|(key, _)| {
            key == property || key.split_once("::").is_some_and(|(_, p)| p == property)
        })
    })
}

/// The first `key=value` written on an element of `factory` that the element does not have,
/// as `(line, key)`. `None` if the factory is not installed or every property exists.
pub fn unknown_property(lines: &[Line], factory: &str) -> Option<(usize, String)> {
    let element = gst::ElementFactory::make(factory).build().ok()?;
    let body = Body::new(lines);
    let lexed = LaunchText::lex(&body.text);
    let mut current = false;
    for token in lexed.words() {
        match lexed.property(token) {
            // `sink_0::xpos=` is a pad property, checked when the pad exists.
            Some((key, _)) if current => {
                if !key.contains("::") && element.find_property(key).is_none() {
                    return Some((body.line_at(token.span.start), key.to_owned()));
                }
            }
            Some(_) => {}
            None => current = lexed.str(token.span) == factory,
        }
    }
    None
}

/// The quoted words of a GStreamer message, in order: `no property "x" in element "y"`
/// gives `["x", "y"]`.
fn quoted(message: &str) -> Vec<&str> {
    message.split('"').skip(1).step_by(2).collect()
}

/// The line a GStreamer parse error is about, and the message to show. `missing` are the
/// elements the parser could not find.
pub fn explain_parse_error(lines: &[Line], message: &str, missing: &[String]) -> (usize, String) {
    let first = lines.first().map(|(n, _)| *n).unwrap_or(1);
    for element in missing {
        if let Some((line, property)) = unknown_property(lines, element) {
            return (
                line,
                format!(
                    "element `{element}` has no property `{property}` (`gst-inspect-1.0 {element}` lists its properties)"
                ),
            );
        }
    }
    let missing: Vec<&String> = missing
        .iter()
        .filter(|m| gst::ElementFactory::find(m).is_none())
        .collect();
    if let Some(element) = missing.first() {
        let line = line_of_element(lines, element).unwrap_or(first);
        let hint = match package_for(element) {
            Some(package) => format!("install {package}"),
            None => "install the GStreamer plugin that provides it (`gst-inspect-1.0` lists what is installed)".into(),
        };
        let mut text = format!("no GStreamer element `{element}` ({hint})");
        if missing.len() > 1 {
            let rest: Vec<&str> = missing[1..].iter().map(|m| m.as_str()).collect();
            text.push_str(&format!("; also missing: {}", rest.join(", ")));
        }
        return (line, text);
    }
    // GStreamer 1.22 builds elements with their properties at once, so an unknown
    // property makes the element itself "missing": look for the property first.
    let words = quoted(message);
    if message.starts_with("no property") || message.starts_with("could not set property") {
        if let Some(property) = words.first() {
            let line = line_of_property(lines, property).unwrap_or(first);
            let element = words.get(1).copied().unwrap_or("?");
            return (
                line,
                format!(
                    "{message} (`gst-inspect-1.0 {}` lists its properties)",
                    element.trim_end_matches(|c: char| c.is_ascii_digit())
                ),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("could not link ") {
        let from = rest.split_whitespace().next().unwrap_or("");
        let line = line_of_element(lines, from).unwrap_or(first);
        return (
            line,
            format!("{message} (their caps do not fit; add a converter or caps filter)"),
        );
    }
    (first, format!("pipeline does not parse: {message}"))
}

/// The Debian 12 package that usually provides a GStreamer element, where known.
pub fn package_for(element: &str) -> Option<&'static str> {
    const BASE: &str = "gstreamer1.0-plugins-base";
    const GOOD: &str = "gstreamer1.0-plugins-good";
    const BAD: &str = "gstreamer1.0-plugins-bad";
    const UGLY: &str = "gstreamer1.0-plugins-ugly";
    const RS: &str =
        "the gst-plugins-rs plugins (not packaged in Debian 12; build them with cargo-c)";
    let package = match element {
        "opusenc" | "opusdec" | "oggmux" | "oggdemux" | "vorbisenc" | "vorbisdec" | "theoraenc"
        | "compositor" | "audiomixer" | "videoconvert" | "audioconvert" | "audioresample"
        | "videoscale" | "videorate" | "audiorate" | "decodebin" | "decodebin3" | "parsebin"
        | "uridecodebin" | "encodebin" | "videotestsrc" | "audiotestsrc" | "appsrc" | "appsink"
        | "playbin" | "volume" | "videoconvertscale" | "audiointerleave" => BASE,
        "matroskamux" | "matroskademux" | "webmmux" | "mp4mux" | "qtmux" | "qtdemux" | "vp8enc"
        | "vp8dec" | "vp9enc" | "vp9dec" | "flacenc" | "flacdec" | "wavenc" | "wavparse"
        | "level" | "spectrum" | "splitmuxsink" | "jpegenc" | "pngenc" | "lamemp3enc"
        | "videobox" | "videoflip" | "videocrop" | "flvmux" | "souphttpsrc" | "rtpvp8depay"
        | "rtpvp9depay" | "rtph264depay" | "rtph265depay" | "rtpopusdepay" | "isomp4"
        | "audioecho" | "equalizer-10bands" | "deinterlace" | "alphacolor" => GOOD,
        "x264enc" | "mpeg2dec" | "a52dec" | "sidplay" | "dvdreadsrc" => UGLY,
        "hlssink2" | "hlssink" | "x265enc" | "fdkaacenc" | "fdkaacdec" | "openh264enc"
        | "openh264dec" | "av1enc" | "av1dec" | "webrtcbin" | "mpegtsmux" | "tsdemux"
        | "h264parse" | "h265parse" | "vp9parse" | "av1parse" | "voaacenc" | "srtsink"
        | "srtsrc" | "rtmp2sink" | "dashsink" | "svtav1enc" | "interaudiosink"
        | "intervideosink" | "videoparse" | "rawvideoparse" | "aesenc" | "watchdog" => BAD,
        "webrtcsink" | "webrtcsrc" | "rtpav1depay" | "rtpav1pay" | "fmp4mux" | "cmafmux"
        | "isofmp4mux" | "hlssink3" | "livesync" | "togglerecord" | "rsfilesink" | "whipsink"
        | "whepsrc" | "rav1enc" | "gtkwaylandsink" => RS,
        "nicesrc" | "nicesink" => "gstreamer1.0-nice",
        "textoverlay" | "timeoverlay" | "clockoverlay" => "gstreamer1.0-x",
        "dav1ddec" => RS,
        _ if element.starts_with("avenc_")
            || element.starts_with("avdec_")
            || element.starts_with("avmux_")
            || element.starts_with("avdemux_") =>
        {
            "gstreamer1.0-libav"
        }
        _ if element.starts_with("vaapi") => "gstreamer1.0-vaapi",
        _ if element.starts_with("gl") => "gstreamer1.0-gl",
        _ if element.starts_with("nv") => BAD,
        _ => return None,
    };
    Some(package)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Line> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 10, l.to_owned()))
            .collect()
    }

    #[test]
    fn finds_unbalanced_quotes() {
        assert_eq!(
            unbalanced_quote(&lines("a name=\"x y\" ! b\nc d='e'")),
            None
        );
        let (line, message) = unbalanced_quote(&lines("a ! b\nc name=\"x ! d\ne")).unwrap();
        assert_eq!(line, 11);
        assert!(message.contains("never closed"), "{message}");
        // A quote inside the other kind, or escaped, is not an opening quote.
        assert_eq!(unbalanced_quote(&lines("a s=\"it's\" t=\\\"")), None);
    }

    #[test]
    fn points_at_elements_and_properties() {
        gst::init().unwrap();
        let l = lines(
            "compositor name=vmix ! videoconvert\n! avenc_nosuchcodec bitrate=1 ! mux.\nmp4mux name=mux",
        );
        assert_eq!(line_of_element(&l, "avenc_nosuchcodec"), Some(11));
        assert_eq!(line_of_element(&l, "avenc_nosuchcodec0"), Some(11));
        assert_eq!(line_of_element(&l, "mux"), Some(12));
        assert_eq!(line_of_property(&l, "bitrate"), Some(11));
        let (line, message) =
            explain_parse_error(&l, "no property \"bitrate\" in element \"x264enc0\"", &[]);
        assert_eq!(line, 11);
        assert!(message.contains("gst-inspect-1.0 x264enc"), "{message}");
        let (line, message) = explain_parse_error(
            &l,
            "no element \"avenc_nosuchcodec\"",
            &["avenc_nosuchcodec".into()],
        );
        assert_eq!(line, 11);
        assert!(message.contains("gstreamer1.0-libav"), "{message}");
        // An installed element reported missing has a bad property (GStreamer 1.22 builds
        // elements with their properties at once).
        let l = lines("fakesrc\n! fakesink no-such-prop=1");
        let (line, message) =
            explain_parse_error(&l, "no element \"fakesink\"", &["fakesink".into()]);
        assert_eq!(line, 11);
        assert!(message.contains("no property `no-such-prop`"), "{message}");
    }

    #[test]
    fn quoted_values_are_neither_elements_nor_properties() {
        gst::init().unwrap();
        // A quote may span lines; what is inside it is a value.
        let l = lines("fakesrc ! fakesink name=\"a b=1\nx264enc\" sync=false\n! x264enc!fakesink");
        assert_eq!(line_of_property(&l, "b"), None);
        assert_eq!(line_of_property(&l, "sync"), Some(11));
        assert_eq!(line_of_element(&l, "x264enc"), Some(12));
        assert_eq!(line_of_element(&l, "a b=1\nx264enc"), Some(10));
        assert_eq!(unknown_property(&l, "fakesink"), None);
        // Pad properties are found after their pad's name.
        let l = lines("compositor name=vmix\n  sink_1::xpos=3 ! fakesink");
        assert_eq!(line_of_property(&l, "xpos"), Some(11));
        assert_eq!(unknown_property(&l, "compositor"), None);
    }

    #[test]
    fn knows_common_packages() {
        assert_eq!(package_for("avenc_aac"), Some("gstreamer1.0-libav"));
        assert_eq!(package_for("hlssink2"), Some("gstreamer1.0-plugins-bad"));
        assert_eq!(package_for("frobnicator"), None);
    }
}
