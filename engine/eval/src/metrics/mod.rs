//! Automatic metrics that need no judge: BLEU-4 and ROUGE-L against reference replies,
//! distinct-n, question rate, length against the word budget and diagnostic-label leakage.
//!
//! Every function takes client-facing replies: remove hidden reasoning first with
//! [`crate::rubric::strip_think`].

mod bleu;
mod bleu_tokenizer;
mod distinct;
mod reply_stats;
mod rouge;

pub use bleu::{corpus_bleu, sentence_bleu, Bleu, BleuError};
pub use bleu_tokenizer::BleuTokenizer;
pub use distinct::{distinct_n, distinct_tokens, Distinct};
pub use reply_stats::{
    count_questions, label_leakage, label_leakage_by_plan, length_vs_budget, question_rate,
    LabelLeakage, LengthVsBudget, QuestionRate,
};
pub use rouge::{rouge_l, rouge_l_tokens, rouge_tokens, RougeL};
