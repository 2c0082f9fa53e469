//! Scoring a dialogue's client turns with the screen: each turn whole, each of its sentences,
//! and (from the second turn on) the turn read together with the client's earlier turns.

use psy_core::dialogue::Dialogue;
use psy_core::module::RiskLevel;
use psy_core::semantic::{sentence_spans, SentenceEmbedder};

use super::head::{HeadOutput, LEVELS};
use super::spec::Thresholds;
use super::Screen;

/// Earlier client turns read together with a turn: enough for "I know where the blades are"
/// two turns before "they're in my hand", few enough to stay within the encoder's 256 tokens.
pub const CONTEXT_TURNS: usize = 2;

/// `P(>= moderate)` below which the screen's look-alike reading of a whole message is a
/// confident no: hyperbole and idioms read 0.002-0.05, thoughts meant 0.7-0.99 (spent sets).
pub const PLAIN_LOOKALIKE: f32 = 0.10;

/// `P(>= moderate)` below which every piece of a turn is the screen's confident no, strong
/// enough to hold the lexicon's cues at low. Chosen on the spent held-out sets (rule 33: 42
/// false alarms fixed, no risk item lost); look-alikes the lexicon raises read 0.001-0.02.
pub const CONFIDENT_NO: f32 = 0.02;

/// What part of a turn a piece is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceKind {
    Message,
    Sentence,
    /// The turn followed by the client's previous turns (newest first, so that the encoder's
    /// truncation cuts the oldest words, never the turn itself).
    Context,
}

impl PieceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PieceKind::Message => "message",
            PieceKind::Sentence => "sentence",
            PieceKind::Context => "with earlier turns",
        }
    }
}

/// One scored text.
#[derive(Clone, Debug)]
pub struct Piece {
    pub kind: PieceKind,
    /// Index of the client message in the dialogue, and the byte span in it.
    pub message: usize,
    pub start: usize,
    pub end: usize,
    pub output: HeadOutput,
}

/// The screen's reading of one client turn.
#[derive(Clone, Debug)]
pub struct TurnScore {
    pub message: usize,
    /// The level from the turn's own pieces (message and sentences).
    pub own: RiskLevel,
    /// The level the context piece reaches (earlier turns with this one), capped at high: what
    /// earlier turns said is evidence, not a report of what is happening now.
    pub context: RiskLevel,
    pub pieces: Vec<Piece>,
}

impl TurnScore {
    /// The piece with the highest score on the output that decides `level`, among `kinds`.
    pub fn strongest(&self, level: RiskLevel, kinds: &[PieceKind]) -> Option<&Piece> {
        let k = output_for(level);
        self.pieces
            .iter()
            .filter(|p| kinds.contains(&p.kind))
            .max_by(|a, b| a.output.levels[k].total_cmp(&b.output.levels[k]))
    }
}

/// The level output that decides `level` (`P(>= moderate)` for moderate and below).
pub fn output_for(level: RiskLevel) -> usize {
    match level {
        RiskLevel::Imminent => 2,
        RiskLevel::High => 1,
        _ => 0,
    }
}

/// The context piece's text: the turn, then the earlier turns newest first (so that the
/// encoder's truncation cuts the oldest words, never the turn itself).
fn context_text<'a>(turn: &str, earlier: impl Iterator<Item = &'a str>) -> String {
    let mut joined = turn.to_string();
    for e in earlier {
        joined.push('\n');
        joined.push_str(e);
    }
    joined
}

fn holds_any(p: &Piece, spans: &[(usize, usize)]) -> bool {
    spans.iter().any(|&(s, e)| s < p.end && p.start < e)
}

impl Thresholds {
    /// `P(>= high)` at or above `cut`, with `P(>= moderate)` at or above the high gate: the
    /// outputs are cumulative, so a piece the screen gives almost no chance of being even
    /// moderate is not high (a low `high` cut-off alone rated "my sister is here with me now,
    /// I'm safe" high).
    pub fn is_high(&self, p: &[f32; LEVELS], cut: f32) -> bool {
        p[1] >= cut && p[0] >= self.high_gate.unwrap_or(0.0)
    }

    /// The level these cut-offs give to one whole message's probabilities.
    pub fn level_of(&self, p: &[f32; LEVELS]) -> RiskLevel {
        if self.is_high(p, self.high) && p[2] >= self.imminent {
            RiskLevel::Imminent
        } else if self.is_high(p, self.high) {
            RiskLevel::High
        } else if p[0] >= self.moderate {
            RiskLevel::Moderate
        } else {
            RiskLevel::None
        }
    }

    /// The level of a sentence read alone: its own cut-offs for moderate and high; a sentence
    /// alone is never imminent (the whole message must say so).
    pub fn sentence_level_of(&self, p: &[f32; LEVELS]) -> RiskLevel {
        if self.is_high(p, self.sentence_high) {
            RiskLevel::High
        } else if p[0] >= self.sentence_moderate {
            RiskLevel::Moderate
        } else {
            RiskLevel::None
        }
    }

    /// The level of a message read without the client's denial of harm: the message's
    /// moderate cut-off (a wish to be dead told beside "I wouldn't do anything" is still the
    /// wish), and high only as clear as a sentence read alone must be (the message's high
    /// cut-off, 0.033, rates "I just want him to know how humiliating it was" high once "I
    /// don't want to hurt him" is gone); never imminent (a turn that says the client will not
    /// act is no attempt under way; the lexicon reads a place or means of its own).
    pub fn after_denial_level_of(&self, p: &[f32; LEVELS]) -> RiskLevel {
        if self.is_high(p, self.sentence_high) {
            RiskLevel::High
        } else if p[0] >= self.moderate {
            RiskLevel::Moderate
        } else {
            RiskLevel::None
        }
    }

    /// The level of a turn read with the client's earlier turns: its own cut-offs when the
    /// manifest gives them, never above high (what earlier turns said is evidence, not a
    /// report of what is happening now).
    pub fn context_level_of(&self, p: &[f32; LEVELS]) -> RiskLevel {
        if self.is_high(p, self.context_high.unwrap_or(self.high)) {
            RiskLevel::High
        } else if p[0] >= self.context_moderate.unwrap_or(self.moderate) {
            RiskLevel::Moderate
        } else {
            RiskLevel::None
        }
    }
}

impl Screen {
    /// The level the thresholds give to one piece's probabilities.
    pub fn level_of(&self, p: &[f32; LEVELS]) -> RiskLevel {
        self.spec.thresholds.level_of(p)
    }

    /// See [`Thresholds::sentence_level_of`].
    pub fn sentence_level_of(&self, p: &[f32; LEVELS]) -> RiskLevel {
        self.spec.thresholds.sentence_level_of(p)
    }

    /// See [`Thresholds::context_level_of`].
    pub fn context_level_of(&self, p: &[f32; LEVELS]) -> RiskLevel {
        self.spec.thresholds.context_level_of(p)
    }

    /// The pieces of one message: the whole text, and its sentences when it has more than one.
    pub fn pieces_of(text: &str) -> Vec<(PieceKind, usize, usize)> {
        let mut out = vec![(PieceKind::Message, 0, text.len())];
        let sentences = sentence_spans(text);
        if sentences.len() > 1 {
            out.extend(
                sentences
                    .into_iter()
                    .map(|(s, e)| (PieceKind::Sentence, s, e)),
            );
        }
        out
    }

    /// Scores the probabilities of one text alone (the unit training and calibration see).
    pub fn score_text(
        &self,
        embedder: &dyn SentenceEmbedder,
        text: &str,
    ) -> Result<RiskLevel, String> {
        let turns = self.score_dialogue(embedder, &Dialogue::from_message(text))?;
        Ok(turns.first().map(|t| t.own).unwrap_or(RiskLevel::None))
    }

    /// Scores every client turn of `dialogue` (one batched call to the encoder).
    pub fn score_dialogue(
        &self,
        embedder: &dyn SentenceEmbedder,
        dialogue: &Dialogue,
    ) -> Result<Vec<TurnScore>, String> {
        let turns: Vec<_> = dialogue.client_turns().collect();
        let mut texts: Vec<String> = Vec::new();
        let mut layout: Vec<(usize, PieceKind, usize, usize)> = Vec::new();
        for (pos, turn) in turns.iter().enumerate() {
            for (kind, s, e) in Self::pieces_of(turn.text) {
                texts.push(turn.text[s..e].to_string());
                layout.push((pos, kind, s, e));
            }
            if pos > 0 {
                let earlier = turns[pos.saturating_sub(CONTEXT_TURNS)..pos].iter().rev();
                texts.push(context_text(turn.text, earlier.map(|t| t.text)));
                layout.push((pos, PieceKind::Context, 0, turn.text.len()));
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let outputs = self.read(embedder, &refs)?;
        let mut out: Vec<TurnScore> = turns
            .iter()
            .map(|t| TurnScore {
                message: t.index,
                own: RiskLevel::None,
                context: RiskLevel::None,
                pieces: Vec::new(),
            })
            .collect();
        for ((pos, kind, start, end), output) in layout.into_iter().zip(outputs) {
            let level = match kind {
                PieceKind::Sentence => self.sentence_level_of(&output.levels),
                PieceKind::Context => self.context_level_of(&output.levels),
                PieceKind::Message => self.level_of(&output.levels),
            };
            let turn = &mut out[pos];
            match kind {
                PieceKind::Context => turn.context = turn.context.max(level),
                _ => turn.own = turn.own.max(level),
            }
            turn.pieces.push(Piece {
                kind,
                message: turn.message,
                start,
                end,
                output,
            });
        }
        Ok(out)
    }

    /// The level of the turn's own words without the sentences that hold one of `spans` (byte
    /// spans of a change the client named after a crisis): "I came down off the bridge and my
    /// sister is with me" names the bridge because it reports leaving it, and the screen, which
    /// learned the bridge as a place of crisis, reads it high. The whole turn holds the span too,
    /// so only the other sentences are read; none left reads none.
    pub fn own_without(&self, turn: &TurnScore, spans: &[(usize, usize)]) -> RiskLevel {
        turn.pieces
            .iter()
            .filter(|p| p.kind == PieceKind::Sentence && !holds_any(p, spans))
            .map(|p| self.sentence_level_of(&p.output.levels))
            .max()
            .unwrap_or(RiskLevel::None)
    }

    /// Keeps [`Screen::own_without`] as the turn's own reading: the pieces holding a span go.
    pub fn discount_spans(&self, turn: &mut TurnScore, spans: &[(usize, usize)]) {
        turn.own = self.own_without(turn, spans);
        turn.pieces.retain(|p| {
            p.kind == PieceKind::Context || p.kind == PieceKind::Sentence && !holds_any(p, spans)
        });
    }

    /// Reads the turn's own words again with `spans` blanked out (spaces of the same length, so
    /// the pieces' offsets still point into `text`), and keeps that reading when it is lower:
    /// "I wish I could not wake up. I wouldn't do anything, I just wish it" without "I wouldn't
    /// do anything" is still the wish, where dropping the sentence would lose the whole
    /// message's reading of it. The whole message is read with
    /// [`Thresholds::after_denial_level_of`], its sentences as sentences. The context piece
    /// (`earlier`: the client's previous turns, newest first, as `score_dialogue` joins them) is
    /// read again with the same spans blanked and kept when lower ("I am not thinking of harming
    /// myself" after "my dog died on saturday" read moderate there).
    pub fn reread_without(
        &self,
        embedder: &dyn SentenceEmbedder,
        turn: &mut TurnScore,
        text: &str,
        earlier: &[&str],
        spans: &[(usize, usize)],
    ) -> Result<(), String> {
        // The spans are word boundaries, so each range is whole characters.
        let mut masked = text.to_string();
        for &(s, e) in spans {
            masked.replace_range(s..e, &" ".repeat(e - s));
        }
        let mut pieces: Vec<(PieceKind, usize, usize)> = Self::pieces_of(&masked)
            .into_iter()
            .filter(|&(_, s, e)| masked[s..e].chars().any(char::is_alphanumeric))
            .collect();
        let mut texts: Vec<String> = pieces
            .iter()
            .map(|&(_, s, e)| masked[s..e].to_string())
            .collect();
        if !earlier.is_empty() && turn.pieces.iter().any(|p| p.kind == PieceKind::Context) {
            pieces.push((PieceKind::Context, 0, text.len()));
            texts.push(context_text(&masked, earlier.iter().copied()));
        }
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let outputs = if texts.is_empty() {
            Vec::new()
        } else {
            self.read(embedder, &texts)?
        };
        let mut own = RiskLevel::None;
        let mut read = Vec::with_capacity(pieces.len());
        let mut context: Option<(RiskLevel, Piece)> = None;
        for ((kind, start, end), output) in pieces.into_iter().zip(outputs) {
            if kind == PieceKind::Context {
                let level = self.context_level_of(&output.levels);
                let piece = Piece {
                    kind,
                    message: turn.message,
                    start,
                    end,
                    output,
                };
                context = Some((level, piece));
                continue;
            }
            own = own.max(match kind {
                PieceKind::Sentence => self.sentence_level_of(&output.levels),
                _ => self.spec.thresholds.after_denial_level_of(&output.levels),
            });
            read.push(Piece {
                kind,
                message: turn.message,
                start,
                end,
                output,
            });
        }
        if own < turn.own {
            turn.own = own;
            turn.pieces.retain(|p| p.kind == PieceKind::Context);
            turn.pieces.extend(read);
        }
        if let Some((level, piece)) = context.filter(|(l, _)| *l < turn.context) {
            turn.context = level;
            turn.pieces.retain(|p| p.kind != PieceKind::Context);
            turn.pieces.push(piece);
        }
        Ok(())
    }

    /// The piece that speaks for a turn's own words at `level`: the whole message when it
    /// reaches that level itself, because it keeps who and what the words are about ("I've put a
    /// knife under my pillow" alone reads as self-harm; with "thoughts about hurting my roommate"
    /// before it, the message reads as harm to others); else the strongest sentence (a crisis in
    /// the second sentence that the whole message dilutes).
    pub fn deciding_piece<'t>(&self, turn: &'t TurnScore, level: RiskLevel) -> Option<&'t Piece> {
        turn.pieces
            .iter()
            .find(|p| p.kind == PieceKind::Message && self.level_of(&p.output.levels) >= level)
            .or_else(|| turn.strongest(level, &[PieceKind::Message, PieceKind::Sentence]))
    }

    /// Whether the screen reads the turn as a look-alike and nothing in it as a risk: the whole
    /// message's most likely category a look-alike with `P(>= moderate)` below
    /// [`PLAIN_LOOKALIKE`], and no piece of the turn at moderate or above.
    pub fn reads_as_plain_lookalike(&self, turn: &TurnScore) -> bool {
        turn.own == RiskLevel::None
            && turn.pieces.iter().any(|p| {
                p.kind == PieceKind::Message
                    && p.output.levels[0] < PLAIN_LOOKALIKE
                    && self.reads_as_lookalike(&p.output)
            })
    }

    /// Whether every piece of the turn (the message, its sentences, the turn with earlier turns)
    /// reads `P(>= moderate)` below [`CONFIDENT_NO`].
    pub fn reads_as_confident_no(&self, turn: &TurnScore) -> bool {
        !turn.pieces.is_empty()
            && turn
                .pieces
                .iter()
                .all(|p| p.output.levels[0] < CONFIDENT_NO)
    }

    /// The most likely category of a piece.
    pub fn category_of(&self, piece: &Piece) -> &str {
        self.best_category(&piece.output)
    }
}
