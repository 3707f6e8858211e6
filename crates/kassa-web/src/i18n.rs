//! One translation mechanism for every page: Project Fluent bundles, English and Chinese, built
//! once from the `.ftl` files under `locales/` (embedded by the build script). English labels
//! are the test contract; a message missing in Chinese falls back to English, and a test keeps
//! the two files of each page in step.

use std::fmt::Display;
use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use unic_langid::LanguageIdentifier;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/locales.rs"));
}

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English (the default).
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

type Bundle = FluentBundle<FluentResource>;

struct Bundles {
    en: Bundle,
    zh: Bundle,
    /// What went wrong while building them (a syntax error, a message defined twice).
    errors: Vec<String>,
}

static BUNDLES: LazyLock<Bundles> = LazyLock::new(|| {
    let mut errors = Vec::new();
    let en = bundle("en", embedded::EN, &mut errors);
    let zh = bundle("zh-CN", embedded::ZH, &mut errors);
    for error in &errors {
        tracing::error!(%error, "a translation file is broken");
    }
    Bundles { en, zh, errors }
});

fn bundle(tag: &str, files: &[(&str, &str)], errors: &mut Vec<String>) -> Bundle {
    let id: LanguageIdentifier = tag.parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // Unicode isolation marks would sit inside HTML text and break searches; the pages never
    // mix writing directions.
    bundle.set_use_isolating(false);
    for (name, text) in files {
        let resource = match FluentResource::try_new((*text).to_owned()) {
            Ok(resource) => resource,
            Err((resource, parse_errors)) => {
                errors.extend(parse_errors.iter().map(|error| format!("{tag}/{name}: {error:?}")));
                resource
            }
        };
        if let Err(add_errors) = bundle.add_resource(resource) {
            errors.extend(add_errors.iter().map(|error| format!("{tag}/{name}: {error:?}")));
        }
    }
    bundle
}

impl Lang {
    /// `en` or `zh` (and the usual longer tags) to a language.
    pub fn parse(text: &str) -> Option<Lang> {
        let primary = text.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("zh") {
            Some(Lang::Zh)
        } else {
            None
        }
    }

    /// The first supported language of an `Accept-Language` header.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        header.split(',').take(16).find_map(|item| Lang::parse(item.split(';').next().unwrap_or_default()))
    }

    /// The short code, for `?lang=` and the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The `lang` attribute of the page.
    pub fn html_tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The other language (the switch in the header).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// The message `id`.
    pub fn t(&self, id: &str) -> String {
        self.format(id, None)
    }

    /// The message `id` with one argument.
    pub fn t1(&self, id: &str, name: &str, value: impl Display) -> String {
        let mut args = FluentArgs::new();
        args.set(name.to_owned(), FluentValue::from(value.to_string()));
        self.format(id, Some(&args))
    }

    /// The message `id` with two arguments.
    pub fn t2(&self, id: &str, name1: &str, value1: impl Display, name2: &str, value2: impl Display) -> String {
        let mut args = FluentArgs::new();
        args.set(name1.to_owned(), FluentValue::from(value1.to_string()));
        args.set(name2.to_owned(), FluentValue::from(value2.to_string()));
        self.format(id, Some(&args))
    }

    /// The message `id` with a number argument (plural rules apply).
    pub fn tn(&self, id: &str, name: &str, value: i64) -> String {
        let mut args = FluentArgs::new();
        args.set(name.to_owned(), FluentValue::from(value));
        self.format(id, Some(&args))
    }

    fn format(&self, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let bundles = &*BUNDLES;
        let primary = match self {
            Lang::En => &bundles.en,
            Lang::Zh => &bundles.zh,
        };
        for bundle in [primary, &bundles.en] {
            if let Some(pattern) = bundle.get_message(id).and_then(|message| message.value()) {
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, args, &mut errors);
                if !errors.is_empty() {
                    tracing::warn!(id, ?errors, "a message did not format cleanly");
                }
                return text.into_owned();
            }
        }
        tracing::warn!(id, "no such message");
        id.to_owned()
    }

    /// Whether the message exists in this language's own bundle (tests).
    pub fn has(&self, id: &str) -> bool {
        let bundles = &*BUNDLES;
        match self {
            Lang::En => bundles.en.has_message(id),
            Lang::Zh => bundles.zh.has_message(id),
        }
    }
}

/// Problems found while building the bundles (tests assert there are none).
pub fn bundle_errors() -> &'static [String] {
    &BUNDLES.errors
}

/// The message ids of each language's files, in file order (tests).
pub fn message_ids() -> (Vec<String>, Vec<String>) {
    (ids(embedded::EN), ids(embedded::ZH))
}

fn ids(files: &[(&str, &str)]) -> Vec<String> {
    let mut ids = Vec::new();
    for (_, text) in files {
        for line in text.lines() {
            let Some((name, _)) = line.split_once('=') else { continue };
            let name = name.trim_end();
            let is_id = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if is_id && !line.starts_with(' ') {
                ids.push(name.to_owned());
            }
        }
    }
    ids
}
