//! Which characters a line may carry: the rule for free text, which every line as a whole obeys
//! too. The parser ([`parse`](super::parse)) checks a whole line with it before it reads a field,
//! and the encoder a whole line before it sends one.

use super::error::ProtocolError;

/// The zero width joiner, which glues emoji into one: 👨‍👩‍👧 is 👨 ZWJ 👩 ZWJ 👧.
const ZWJ: char = '\u{200d}';
/// The black flag that starts a subdivision flag: 🏴 and tags spelling `gbsct`, then U+E007F.
const BLACK_FLAG: char = '\u{1f3f4}';
/// The cancel tag that ends a flag's tag sequence.
const CANCEL_TAG: char = '\u{e007f}';

/// Free text, and every line as a whole: any character but a control character or an invisible
/// one, except where an emoji sequence needs it.
///
/// ```text
/// text    = *( visible / SP / TAB / joined )
/// visible = any UTF-8 character but those below, SP and TAB
/// joined  = emoji ZWJ emoji              ; 👨‍👩‍👧, 🏳️‍🌈: U+200D only between two emoji
///         / visible VS                   ; ❤️, 1️⃣: U+FE00-FE0F, U+E0100-E01EF right after a
///                                        ;   visible character
///         / U+1F3F4 1*tag U+E007F        ; 🏴 + tags + cancel tag: a subdivision flag
/// emoji   = U+2600-27BF / U+2B00-2BFF / U+1F000-1FAFF   ; the blocks emoji sequences use
/// tag     = U+E0020-E007E
///
/// refused: control characters (char::is_control: U+0000-001F but TAB, U+007F-009F), and the
///   invisible format characters that reorder or hide text: bidi controls U+061C U+200E U+200F
///   U+202A-202E U+2066-2069, separators U+2028 U+2029, zero-width U+180E U+200B U+200C U+2060-2064
///   U+FEFF, soft hyphen U+00AD, the deprecated U+206A-206F, annotations U+FFF9-FFFB, musical
///   formatting U+1D173-1D17A, U+E0000-E001F; and a ZWJ, a variation selector or a tag outside
///   the sequences above
/// ```
///
/// A right-to-left override (U+202E) makes `MSG gnp.exe` show as `MSG exe.png`, and a line
/// separator (U+2028) starts what looks like a new log line in many terminals: either lets a
/// student forge what the operator reads. Zero-width characters make two different names look
/// the same, and tag characters can carry a whole hidden sentence. The joiner, the variation
/// selectors and the tags are let through only where an emoji needs them, so `ad`, a joiner,
/// `min` stays refused while a family emoji passes. (Std has no table of Unicode's
/// categories; the emoji blocks are ranges, the rest is the list above, and the dissector has the
/// same lists.) Errors give the character and its byte in `text`, counted from 1.
pub fn check_text(text: &str) -> Result<(), ProtocolError> {
    // Almost every line is printable ASCII, where none of the rules below can refuse anything
    // (every character they name is a control character or lies above U+007F). One pass over the
    // bytes says so; the loop below costs tens of instructions per character, and this runs on
    // every line read and written (half of a round trip's work in the server, measured). The
    // pass does not stop at the first odd byte, so that the compiler checks 16 bytes at a time.
    let printable = |byte: u8| matches!(byte, b' '..=b'~' | b'\t');
    if text.bytes().fold(true, |all, byte| all & printable(byte)) {
        return Ok(());
    }
    check_characters(text)
}

/// [`check_text`]'s rules, character by character.
fn check_characters(text: &str) -> Result<(), ProtocolError> {
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let next = chars.peek().map(|&(_, next)| next);
        let at = index + 1;
        if c.is_control() && c != '\t' {
            return Err(ProtocolError::ControlCharacter { character: c, at });
        }
        let allowed = match c {
            ZWJ => {
                previous.is_some_and(|p| is_emoji(p) || p == '\u{fe0f}')
                    && next.is_some_and(is_emoji)
            }
            '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}' => previous.is_some_and(is_visible),
            '\u{e0020}'..='\u{e007e}' => {
                previous.is_some_and(|p| p == BLACK_FLAG || is_tag(p))
                    && next.is_some_and(|n| is_tag(n) || n == CANCEL_TAG)
            }
            CANCEL_TAG => previous.is_some_and(is_tag),
            c => !is_invisible_format(c),
        };
        if !allowed {
            return Err(ProtocolError::FormatCharacter { character: c, at });
        }
        previous = Some(c);
    }
    Ok(())
}

/// The blocks emoji sequences are made of: symbols and dingbats (❤ ♀ ⚕), arrows and squares
/// (⬛), and the emoji planes (👨 🏳 🌈 and the skin tones).
fn is_emoji(c: char) -> bool {
    matches!(c, '\u{2600}'..='\u{27bf}' | '\u{2b00}'..='\u{2bff}' | '\u{1f000}'..='\u{1faff}')
}

fn is_tag(c: char) -> bool {
    matches!(c, '\u{e0020}'..='\u{e007e}')
}

/// A character a variation selector may follow: one that shows (not a space, not another
/// selector, joiner or tag; controls and format characters never get this far).
fn is_visible(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, ZWJ | '\u{fe00}'..='\u{fe0f}' | '\u{e0000}'..='\u{e01ef}')
}

/// Characters that print nothing themselves but change how the text around them shows, refused
/// wherever they stand (the joiner, the selectors and the tags are [`check_text`]'s).
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E001F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_shortcut_judges_every_ascii_character_as_the_full_rules_do() {
        for byte in 0..=127u8 {
            let c = char::from(byte);
            for text in [
                c.to_string(),
                format!("a{c}"),
                format!("{c}b"),
                format!("x {c} y"),
            ] {
                assert_eq!(check_text(&text), check_characters(&text), "{text:?}");
            }
        }
    }
}
