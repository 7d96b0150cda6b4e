//! Authorization: which topics a client may publish to, subscribe to and receive from
//! (MQTT 5 §3.3, §3.8, §4.7), with rules in Mosquitto's `acl_file` format.
//!
//! The core asks an [`Authorizer`] three questions: on PUBLISH and for a will message
//! ([`Authorizer::can_publish`]), on SUBSCRIBE for each filter ([`Authorizer::can_subscribe`]),
//! and for each message it is about to deliver, retained messages included
//! ([`Authorizer::can_receive`]). [`AllowAll`] answers yes to everything; [`AclRules`] answers
//! from rules in Mosquitto's `acl_file` format.

use std::collections::BTreeMap;

use mqtt5_store::AclRecord;

use crate::auth::ClientInfo;

/// The longest topic an MQTT UTF-8 string can carry (MQTT 5 §1.5.4).
const MAX_TOPIC_LEN: usize = 65_535;

/// What a client may do with topics (MQTT 5 §3.3, §3.8; Mosquitto ACL file semantics).
///
/// [`AclRules`] documents the decisions it makes.
pub trait Authorizer: Send {
    /// May this client publish to `topic` (a topic name)? Also used for will messages.
    fn can_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool;

    /// May this client subscribe to `filter` (the matching filter, with any `$share/name/`
    /// prefix already removed)?
    fn can_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool;

    /// May this client receive a message published on `topic`? The core asks at delivery time,
    /// retained messages included, as Mosquitto does.
    fn can_receive(&self, client: &ClientInfo<'_>, topic: &str) -> bool;
}

/// Allows everything: the authorizer when no ACL is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn can_publish(&self, _client: &ClientInfo<'_>, _topic: &str) -> bool {
        true
    }

    fn can_subscribe(&self, _client: &ClientInfo<'_>, _filter: &str) -> bool {
        true
    }

    fn can_receive(&self, _client: &ClientInfo<'_>, _topic: &str) -> bool {
        true
    }
}

/// An invalid ACL file line or rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// The first word of a line is not `topic`, `user` or `pattern`.
    #[error("ACL line {line}: unknown keyword `{keyword}` (expected `topic`, `user` or `pattern`)")]
    UnknownKeyword {
        /// The 1-based line number.
        line: usize,
        /// The word found.
        keyword: String,
    },
    /// The access type of a `topic` or `pattern` line is not `read`, `write`, `readwrite` or
    /// `deny`.
    #[error(
        "ACL line {line}: unknown access type `{access}` (expected `read`, `write`, `readwrite` or `deny`; a topic with spaces needs an access type)"
    )]
    InvalidAccess {
        /// The 1-based line number.
        line: usize,
        /// The word found.
        access: String,
    },
    /// A `topic` or `pattern` line has no topic.
    #[error("ACL line {line}: missing topic")]
    MissingTopic {
        /// The 1-based line number.
        line: usize,
    },
    /// A `user` line has no user name.
    #[error("ACL line {line}: missing user name")]
    MissingUsername {
        /// The 1-based line number.
        line: usize,
    },
    /// The topic of a `topic` or `pattern` line is not a valid topic filter (MQTT 5 §4.7).
    #[error("ACL line {line}: invalid topic `{topic}`: {reason}")]
    InvalidTopic {
        /// The 1-based line number.
        line: usize,
        /// The topic found.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The topic given to [`AclRule::new`] is not a valid topic filter (MQTT 5 §4.7).
    #[error("invalid ACL topic `{topic}`: {reason}")]
    InvalidRuleTopic {
        /// The topic given.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl AclError {
    /// The 1-based line of the ACL file the error is on, if it came from [`AclRules::parse`].
    #[must_use]
    pub const fn line(&self) -> Option<usize> {
        match self {
            Self::UnknownKeyword { line, .. }
            | Self::InvalidAccess { line, .. }
            | Self::MissingTopic { line }
            | Self::MissingUsername { line }
            | Self::InvalidTopic { line, .. } => Some(*line),
            Self::InvalidRuleTopic { .. } => None,
        }
    }
}

/// The access a rule grants, or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclAccess {
    /// Subscribe and receive.
    Read,
    /// Publish (will messages included).
    Write,
    /// Both [`Read`](Self::Read) and [`Write`](Self::Write); the default in the file format.
    ReadWrite,
    /// Nothing: refuses what any allowing rule would grant.
    Deny,
}

impl AclAccess {
    /// The keyword of the file format: `read`, `write`, `readwrite` or `deny`.
    #[must_use]
    pub const fn keyword(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::ReadWrite => "readwrite",
            Self::Deny => "deny",
        }
    }

    /// Parses a keyword of the file format (exact, lower case); `None` if it is none of them.
    #[must_use]
    pub fn from_keyword(word: &str) -> Option<Self> {
        match word {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "readwrite" => Some(Self::ReadWrite),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }

    const fn allows_read(self) -> bool {
        matches!(self, Self::Read | Self::ReadWrite)
    }

    const fn allows_write(self) -> bool {
        matches!(self, Self::Write | Self::ReadWrite)
    }
}

/// Whom a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclScope {
    /// Clients without a User Name (`topic` lines before any `user` line).
    Anonymous,
    /// The client with this User Name (`topic` lines in a `user` block).
    User(String),
    /// Every client, with `%c` and `%u` levels substituted (`pattern` lines).
    Pattern,
}

/// One rule: a scope, an access and a topic filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclRule {
    scope: AclScope,
    access: AclAccess,
    topic: String,
}

impl AclRule {
    /// Builds a rule, checking that `topic` is a valid topic filter.
    ///
    /// # Errors
    ///
    /// [`AclError::InvalidRuleTopic`] if `topic` is empty, longer than 65,535 bytes, holds a
    /// NUL character, or uses `+` or `#` other than as a whole level (`#` last).
    pub fn new(
        scope: AclScope,
        access: AclAccess,
        topic: impl Into<String>,
    ) -> Result<Self, AclError> {
        let topic = topic.into();
        if let Err(reason) = check_filter(&topic) {
            return Err(AclError::InvalidRuleTopic { topic, reason });
        }
        Ok(Self {
            scope,
            access,
            topic,
        })
    }

    /// Whom the rule applies to.
    #[must_use]
    pub const fn scope(&self) -> &AclScope {
        &self.scope
    }

    /// The access the rule grants (or denies).
    #[must_use]
    pub const fn access(&self) -> AclAccess {
        self.access
    }

    /// The rule's topic filter, `%c` and `%u` levels unsubstituted.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// A rule without its scope, as stored under the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    access: AclAccess,
    topic: String,
}

/// Rules in Mosquitto's `acl_file` format; an [`Authorizer`].
///
/// Empty ([`AclRules::new`]), it denies everything.
///
/// ```
/// use mqtt5_broker::{AclRules, Authorizer, ClientInfo};
///
/// let rules = AclRules::parse("user alice\ntopic readwrite alice/#\npattern read devices/%c/cmd\n")?;
/// let alice = ClientInfo { client_id: "dev1", username: Some("alice") };
/// assert!(rules.can_publish(&alice, "alice/notes"));
/// assert!(rules.can_subscribe(&alice, "devices/dev1/cmd"));
/// assert!(!rules.can_subscribe(&alice, "devices/+/cmd"));
/// # Ok::<(), mqtt5_broker::AclError>(())
/// ```
///
/// # The file format
///
/// [`AclRules::parse`] reads the format of Mosquitto's `acl_file` (`mosquitto.conf(5)`):
///
/// ```text
/// # Lines before any `user` line apply to anonymous clients (no User Name).
/// topic read $SYS/#
///
/// # Lines after `user NAME` apply to the client that logged in as NAME.
/// user roger
/// topic foo/bar
/// topic deny foo/bar/secret
///
/// # `pattern` lines apply to every client, wherever they stand in the file.
/// pattern readwrite devices/%c/#
/// pattern read users/%u/inbox
/// ```
///
/// Exactly what is implemented:
///
/// - A line is cut at its first space or tab into a keyword and the rest. Leading and trailing
///   white space of a line is ignored; so are blank lines and lines whose first non-blank
///   character is `#`.
/// - `topic [ACCESS] TOPIC` and `pattern [ACCESS] TOPIC`, where ACCESS is `read`, `write`,
///   `readwrite` or `deny`. Without ACCESS the access is `readwrite`. The topic is the rest of
///   the line, so it may contain spaces, but then ACCESS must be given: when the rest holds
///   white space its first word must be an access type. A line with an access type and no
///   topic is an error (a topic called `read` is written `topic readwrite read`).
/// - `user NAME` starts a block: the `topic` lines that follow, up to the next `user` line,
///   apply to the client whose User Name is NAME (the rest of the line; it is not the Client
///   Identifier). Several blocks for one name add up. `topic` lines before the first `user`
///   line apply to clients that gave no User Name, and only to them.
/// - `pattern` lines apply to every client, anonymous or named. A topic level that is exactly
///   `%c` stands for the client's Client Identifier, a level that is exactly `%u` for its User
///   Name; `%c` or `%u` inside a longer level is plain text (as in Mosquitto 2.1). A pattern
///   using `%u` never applies to a client without a User Name. A Client Identifier or User Name
///   that is empty or holds `/`, `+` or `#` cannot stand for one topic level: an allowing
///   pattern that needs it does not match, and a `deny` pattern that needs it denies the
///   request (fail closed; Mosquitto goes further and refuses a client whose identifier or
///   name holds `+` or `#` everything once any pattern exists).
/// - Rule topics are topic filters: `+` and `#` are wildcards and must fill a whole level, `#`
///   only as the last level ([MQTT-4.7.1-1], [MQTT-4.7.1-2]). A topic name beginning with `$`
///   is not matched by a rule topic whose first level is a wildcard ([MQTT-4.7.2-1]), so
///   `topic read #` does not cover `$SYS/...`, and `topic deny #` does not deny it either.
/// - Any unknown keyword, unknown access type, missing topic or user name, or invalid topic
///   filter is an [`AclError`] carrying the 1-based line number.
///
/// # Decisions
///
/// The rules that apply to a client are the anonymous rules (no User Name) or the rules of its
/// user block (with a User Name), plus every pattern. Among those, `deny` wins over any allow:
///
/// - **Publish** (and will messages) to topic name `T`: refused if a `deny` rule matches `T`,
///   else allowed if a `write` or `readwrite` rule matches `T`, else refused.
/// - **Receive** a message published on `T`: the same with `read` or `readwrite`.
/// - **Subscribe** to filter `F`: allowed if a `read` or `readwrite` rule *covers* `F`, that is
///   every topic name `F` can match is matched by the rule (rule `a/#` covers `a/+/b`; rule
///   `a/+` does not cover `a/#`), and no `deny` rule covers `F`. A `deny` rule that only
///   overlaps `F` (`deny a/secret` against the filter `a/#`) does not refuse the subscription:
///   as in Mosquitto, the messages it denies are filtered out at delivery by
///   [`Authorizer::can_receive`], which the core must therefore call for every message it
///   delivers. For a filter without wildcards "covers" is plain matching.
///
/// Topics the core passes in are checked too: an empty topic, a topic name holding a wildcard,
/// a NUL character or an invalid filter is refused, never matched.
///
/// Broker-wide policy on `$` topics (clients may not publish to `$SYS/...`) is not this
/// type's business: it only answers from the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclRules {
    anonymous: Vec<Entry>,
    users: BTreeMap<String, Vec<Entry>>,
    patterns: Vec<Entry>,
}

/// A stored access rule that holds no valid rule: an unknown scope or access keyword, a user
/// name that a `user` line could not hold, or an invalid topic filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stored access rule {0:?}")]
pub struct InvalidAclRecord(pub AclRecord);

/// A rule as the store keeps it: `scope` is `anonymous`, `pattern` or `user NAME`; `access` a
/// keyword of [`AclAccess::from_keyword`].
impl TryFrom<&AclRecord> for AclRule {
    type Error = InvalidAclRecord;

    fn try_from(record: &AclRecord) -> Result<Self, InvalidAclRecord> {
        let bad = || InvalidAclRecord(record.clone());
        let scope = match record.scope.as_str() {
            "anonymous" => AclScope::Anonymous,
            "pattern" => AclScope::Pattern,
            other => match other.strip_prefix("user ") {
                // A `user` line of an ACL file could not hold an empty name, control
                // characters or white space at either end.
                Some(name)
                    if !name.is_empty()
                        && name.len() <= 65_535
                        && !name.chars().any(char::is_control)
                        && name.trim() == name =>
                {
                    AclScope::User(name.to_owned())
                }
                _ => return Err(bad()),
            },
        };
        let access = AclAccess::from_keyword(&record.access).ok_or_else(bad)?;
        Self::new(scope, access, record.topic.clone()).map_err(|_| bad())
    }
}

/// The record the store keeps for a rule; [`AclRule::try_from`] reads it back.
impl From<&AclRule> for AclRecord {
    fn from(rule: &AclRule) -> Self {
        let scope = match rule.scope() {
            AclScope::Anonymous => "anonymous".to_owned(),
            AclScope::User(name) => format!("user {name}"),
            AclScope::Pattern => "pattern".to_owned(),
        };
        Self {
            scope,
            access: rule.access().keyword().to_owned(),
            topic: rule.topic().to_owned(),
        }
    }
}

impl AclRules {
    /// No rules: denies everything.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text of an ACL file.
    ///
    /// # Errors
    ///
    /// The first invalid line, with its 1-based number: [`AclError::UnknownKeyword`],
    /// [`AclError::InvalidAccess`], [`AclError::MissingTopic`], [`AclError::MissingUsername`]
    /// or [`AclError::InvalidTopic`].
    pub fn parse(text: &str) -> Result<Self, AclError> {
        let mut rules = Self::new();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(content);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(AclError::MissingUsername { line });
                    }
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (access, topic) = parse_access_and_topic(line, rest)?;
                    if let Err(reason) = check_filter(topic) {
                        return Err(AclError::InvalidTopic {
                            line,
                            topic: topic.to_owned(),
                            reason,
                        });
                    }
                    let scope = match (keyword, &user) {
                        ("pattern", _) => AclScope::Pattern,
                        (_, Some(name)) => AclScope::User(name.clone()),
                        (_, None) => AclScope::Anonymous,
                    };
                    rules.insert(scope, access, topic.to_owned());
                }
                _ => {
                    return Err(AclError::UnknownKeyword {
                        line,
                        keyword: keyword.to_owned(),
                    });
                }
            }
        }
        Ok(rules)
    }

    /// Adds a rule. Order does not matter: `deny` wins wherever it stands.
    pub fn add(&mut self, rule: AclRule) {
        let AclRule {
            scope,
            access,
            topic,
        } = rule;
        self.insert(scope, access, topic);
    }

    /// Removes one rule equal to `rule`; returns whether there was one.
    pub fn remove(&mut self, rule: &AclRule) -> bool {
        let wanted = |entry: &Entry| entry.access == rule.access && entry.topic == rule.topic;
        let list = match &rule.scope {
            AclScope::Anonymous => &mut self.anonymous,
            AclScope::Pattern => &mut self.patterns,
            AclScope::User(name) => match self.users.get_mut(name.as_str()) {
                Some(list) => list,
                None => return false,
            },
        };
        let Some(position) = list.iter().position(wanted) else {
            return false;
        };
        list.remove(position);
        if let AclScope::User(name) = &rule.scope
            && self.users.get(name.as_str()).is_some_and(Vec::is_empty)
        {
            self.users.remove(name.as_str());
        }
        true
    }

    /// The rules, for listing: anonymous rules, then each user's rules by user name, then
    /// patterns; in the order they were added within each group.
    pub fn rules(&self) -> impl Iterator<Item = AclRule> + '_ {
        let anonymous = self
            .anonymous
            .iter()
            .map(|e| e.to_rule(AclScope::Anonymous));
        let users = self.users.iter().flat_map(|(name, entries)| {
            entries
                .iter()
                .map(move |e| e.to_rule(AclScope::User(name.clone())))
        });
        let patterns = self.patterns.iter().map(|e| e.to_rule(AclScope::Pattern));
        anonymous.chain(users).chain(patterns)
    }

    /// The number of rules.
    #[must_use]
    pub fn len(&self) -> usize {
        self.anonymous.len()
            + self.users.values().map(Vec::len).sum::<usize>()
            + self.patterns.len()
    }

    /// Whether there are no rules (everything is denied).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&mut self, scope: AclScope, access: AclAccess, topic: String) {
        let entry = Entry { access, topic };
        match scope {
            AclScope::Anonymous => self.anonymous.push(entry),
            AclScope::User(name) => self.users.entry(name).or_default().push(entry),
            AclScope::Pattern => self.patterns.push(entry),
        }
    }

    /// The non-pattern rules of this client.
    fn own_rules(&self, client: &ClientInfo<'_>) -> &[Entry] {
        match client.username {
            None => &self.anonymous,
            Some(name) => self.users.get(name).map_or(&[], Vec::as_slice),
        }
    }

    /// The decision for one request: `deny` first, then any allowing rule with `allows`.
    /// `applies(rule_levels)` says whether a rule applies to the requested topic or filter.
    fn decide(
        &self,
        client: &ClientInfo<'_>,
        allows: fn(AclAccess) -> bool,
        applies: &dyn Fn(&mut dyn Iterator<Item = &str>) -> bool,
    ) -> bool {
        let own = self.own_rules(client);
        let is_deny = |entry: &&Entry| entry.access == AclAccess::Deny;
        // `deny` rules first, whatever their order in the file.
        for entry in own.iter().filter(is_deny) {
            if applies(&mut entry.topic.split('/')) {
                return false;
            }
        }
        for entry in self.patterns.iter().filter(is_deny) {
            match substitute(&entry.topic, client.client_id, client.username) {
                Substituted::NotApplicable => {}
                // Fail closed: a deny pattern that cannot be applied denies.
                Substituted::Impossible => return false,
                Substituted::Levels(mut levels) => {
                    if applies(&mut levels) {
                        return false;
                    }
                }
            }
        }
        for entry in own.iter().filter(|e| allows(e.access)) {
            if applies(&mut entry.topic.split('/')) {
                return true;
            }
        }
        for entry in self.patterns.iter().filter(|e| allows(e.access)) {
            if let Substituted::Levels(mut levels) =
                substitute(&entry.topic, client.client_id, client.username)
                && applies(&mut levels)
            {
                return true;
            }
        }
        false
    }
}

impl Entry {
    fn to_rule(&self, scope: AclScope) -> AclRule {
        AclRule {
            scope,
            access: self.access,
            topic: self.topic.clone(),
        }
    }
}

impl Authorizer for AclRules {
    fn can_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        check_name(topic).is_ok()
            && self.decide(client, AclAccess::allows_write, &|rule| {
                filter_matches(rule, topic)
            })
    }

    fn can_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool {
        check_filter(filter).is_ok()
            && self.decide(client, AclAccess::allows_read, &|rule| {
                filter_covers(rule, filter)
            })
    }

    fn can_receive(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        check_name(topic).is_ok()
            && self.decide(client, AclAccess::allows_read, &|rule| {
                filter_matches(rule, topic)
            })
    }
}

/// Splits at the first space or tab: the word and the rest, with the rest's leading white
/// space removed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once([' ', '\t']) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// Parses `[ACCESS] TOPIC`, the rest of a `topic` or `pattern` line.
fn parse_access_and_topic(line: usize, rest: &str) -> Result<(AclAccess, &str), AclError> {
    if rest.is_empty() {
        return Err(AclError::MissingTopic { line });
    }
    let (first, after) = split_word(rest);
    match AclAccess::from_keyword(first) {
        Some(_) if after.is_empty() => Err(AclError::MissingTopic { line }),
        Some(access) => Ok((access, after)),
        // A single word is the topic, with the default access.
        None if after.is_empty() => Ok((AclAccess::ReadWrite, first)),
        None => Err(AclError::InvalidAccess {
            line,
            access: first.to_owned(),
        }),
    }
}

/// Checks a topic filter (MQTT 5 §4.7.1, §4.7.3).
fn check_filter(filter: &str) -> Result<(), &'static str> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" if levels.peek().is_some() => {
                return Err("`#` must be the last level [MQTT-4.7.1-1]");
            }
            "#" | "+" => {}
            _ if level.contains(['#', '+']) => {
                return Err("a wildcard must fill a whole level [MQTT-4.7.1-1] [MQTT-4.7.1-2]");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a topic name (MQTT 5 §4.7.3): no wildcards.
fn check_name(topic: &str) -> Result<(), &'static str> {
    check_common(topic)?;
    if topic.contains(['#', '+']) {
        return Err("a topic name holds no wildcard [MQTT-3.3.2-2]");
    }
    Ok(())
}

fn check_common(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("empty [MQTT-4.7.3-1]");
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err("longer than 65535 bytes [MQTT-4.7.3-3]");
    }
    if topic.contains('\0') {
        return Err("holds a NUL character [MQTT-4.7.3-2]");
    }
    Ok(())
}

/// The levels of a pattern rule's topic for one client.
enum Substituted<I> {
    /// The rule does not apply to this client (`%u` and no User Name).
    NotApplicable,
    /// The value to substitute cannot be one topic level (empty, or holds `/`, `+`, `#`).
    Impossible,
    /// The levels, substituted.
    Levels(I),
}

/// Substitutes the `%c` and `%u` levels of a pattern rule's topic.
fn substitute<'a>(
    topic: &'a str,
    client_id: &'a str,
    username: Option<&'a str>,
) -> Substituted<impl Iterator<Item = &'a str>> {
    let uses_client_id = topic.split('/').any(|level| level == "%c");
    let uses_username = topic.split('/').any(|level| level == "%u");
    let username = match username {
        Some(name) => name,
        None if uses_username => return Substituted::NotApplicable,
        None => "",
    };
    if (uses_client_id && !is_single_level(client_id))
        || (uses_username && !is_single_level(username))
    {
        return Substituted::Impossible;
    }
    Substituted::Levels(topic.split('/').map(move |level| match level {
        "%c" => client_id,
        "%u" => username,
        other => other,
    }))
}

fn is_single_level(value: &str) -> bool {
    !value.is_empty() && !value.contains(['/', '+', '#'])
}

/// Whether the topic filter given by `filter` levels matches the topic name `topic`
/// (MQTT 5 §4.7), including the rule that a wildcard first level does not match a topic
/// beginning with `$` ([MQTT-4.7.2-1]).
fn filter_matches(filter: &mut dyn Iterator<Item = &str>, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    let mut first = true;
    loop {
        match (filter.next(), topic_levels.next()) {
            // `#` matches the parent level too: `a/#` matches `a` [MQTT-4.7.1-1].
            (Some("#"), level) => return !(first && level.is_some_and(is_dollar)),
            (Some("+"), Some(level)) => {
                if first && is_dollar(level) {
                    return false;
                }
            }
            (Some(wanted), Some(level)) => {
                if wanted != level {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
        first = false;
    }
}

/// Whether the rule filter given by `rule` levels covers the topic filter `filter`: every
/// topic name `filter` matches is matched by the rule.
fn filter_covers(rule: &mut dyn Iterator<Item = &str>, filter: &str) -> bool {
    let mut filter_levels = filter.split('/');
    let mut first = true;
    // Whether the levels consumed so far join to the empty string: a topic never is empty
    // [MQTT-4.7.3-1], so a `#` there cannot match the parent level.
    let mut prefix_is_empty = true;
    loop {
        match (rule.next(), filter_levels.next()) {
            // A filter whose first level is a literal `$...` matches `$` topics, which a
            // wildcard first level never matches [MQTT-4.7.2-1]. Otherwise `#` covers all
            // that is left, the parent level included.
            (Some("#"), level) => return !(first && level.is_some_and(is_dollar)),
            // A filter `#` matches one level or more where the parent would be the empty
            // topic, and `+/#` matches just that; elsewhere `#` also matches the parent,
            // which `+/...` never does.
            (Some("+"), Some("#")) => return prefix_is_empty && rule.next() == Some("#"),
            (Some("+"), Some(level)) => {
                if first && is_dollar(level) {
                    return false;
                }
                prefix_is_empty = first && level.is_empty();
            }
            // A literal rule level covers only the same literal level.
            (Some(wanted), Some(level)) => {
                if wanted != level {
                    return false;
                }
                prefix_is_empty = first && level.is_empty();
            }
            (None, None) => return true,
            // `a/b` does not cover `a`; `a` does not cover `a/b` or `a/#`.
            (Some(_), None) | (None, Some(_)) => return false,
        }
        first = false;
    }
}

fn is_dollar(level: &str) -> bool {
    level.starts_with('$')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn anon(client_id: &str) -> ClientInfo<'_> {
        ClientInfo {
            client_id,
            username: None,
        }
    }

    fn user<'a>(client_id: &'a str, username: &'a str) -> ClientInfo<'a> {
        ClientInfo {
            client_id,
            username: Some(username),
        }
    }

    fn matches(filter: &str, topic: &str) -> bool {
        filter_matches(&mut filter.split('/'), topic)
    }

    fn covers(rule: &str, filter: &str) -> bool {
        filter_covers(&mut rule.split('/'), filter)
    }

    #[test]
    fn topic_matching_follows_mqtt_rules() {
        let table = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/+", "a/", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "b", false),
            ("#", "a/b", true),
            ("#", "/a", true),
            ("+/+", "/a", true),
            ("/#", "a/b", false),
            ("a//b", "a//b", true),
            ("+/b/+", "x/b/y", true),
            // [MQTT-4.7.2-1]
            ("#", "$SYS/uptime", false),
            ("+/uptime", "$SYS/uptime", false),
            ("$SYS/#", "$SYS/uptime", true),
            ("$SYS/+", "$SYS/uptime", true),
            ("a/+", "a/$b", true),
        ];
        for (filter, topic, expected) in table {
            assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn covering_is_subset_of_matched_topics() {
        let table = [
            ("a/#", "a/+/b", true),
            ("a/#", "a/#", true),
            ("a/#", "a", true),
            ("a/#", "a/b", true),
            ("a/+", "a/#", false),
            ("a/+", "a/+", true),
            ("a/+", "a/b", true),
            ("a/+", "a/+/b", false),
            ("a/+/#", "a/+", true),
            ("a/+/#", "a/#", false),
            ("a/b", "a/+", false),
            ("a/b", "a/b", true),
            ("a/b", "a", false),
            ("a", "a/#", false),
            ("#", "#", true),
            ("#", "+/+", true),
            ("+", "#", false),
            ("+/#", "#", true),
            ("+/+/#", "#", false),
            ("a/+/#", "a/#", false),
            ("+/#", "+/#", true),
            ("/+/#", "/#", true),
            ("#", "$SYS/#", false),
            ("+/#", "$SYS/a", false),
            ("$SYS/#", "$SYS/broker/+", true),
            ("$SYS/+", "$SYS/#", false),
        ];
        for (rule, filter, expected) in table {
            assert_eq!(covers(rule, filter), expected, "{rule} covers {filter}");
        }
    }

    #[test]
    fn empty_rules_deny_everything() {
        let rules = AclRules::new();
        assert!(rules.is_empty());
        let c = anon("c1");
        assert!(!rules.can_publish(&c, "a"));
        assert!(!rules.can_subscribe(&c, "a"));
        assert!(!rules.can_receive(&c, "a"));
    }

    #[test]
    fn anonymous_block_applies_only_to_clients_without_username() {
        let rules = AclRules::parse(
            "topic read public/#\ntopic write inbox\nuser bob\ntopic readwrite bob/#\n",
        )
        .unwrap();
        let a = anon("c1");
        let bob = user("c2", "bob");
        let table: [(&ClientInfo<'_>, &str, bool, bool); 6] = [
            (&a, "public/news", false, true),
            (&a, "inbox", true, false),
            (&a, "bob/x", false, false),
            (&bob, "public/news", false, false),
            (&bob, "inbox", false, false),
            (&bob, "bob/x", true, true),
        ];
        for (client, topic, publish, read) in table {
            assert_eq!(
                rules.can_publish(client, topic),
                publish,
                "{client:?} pub {topic}"
            );
            assert_eq!(
                rules.can_receive(client, topic),
                read,
                "{client:?} recv {topic}"
            );
            assert_eq!(
                rules.can_subscribe(client, topic),
                read,
                "{client:?} sub {topic}"
            );
        }
    }

    #[test]
    fn user_blocks_apply_to_their_user_and_add_up() {
        let rules = AclRules::parse(
            "user alice\ntopic alice/#\nuser carol\ntopic read carol/in\nuser alice\ntopic read shared/+\n",
        )
        .unwrap();
        let alice = user("x", "alice");
        let carol = user("x", "carol");
        let mallory = user("x", "mallory");
        assert!(rules.can_publish(&alice, "alice/a/b"));
        assert!(rules.can_subscribe(&alice, "shared/+"));
        assert!(!rules.can_publish(&alice, "shared/x"));
        assert!(!rules.can_publish(&alice, "carol/in"));
        assert!(rules.can_receive(&carol, "carol/in"));
        assert!(!rules.can_publish(&carol, "carol/in"));
        assert!(!rules.can_receive(&mallory, "alice/a"));
        // The user name, not the client id, selects the block.
        assert!(!rules.can_publish(&anon("alice"), "alice/a"));
        assert_eq!(rules.len(), 3);
    }

    #[test]
    fn patterns_substitute_client_id_and_username() {
        let rules = AclRules::parse(
            "pattern readwrite devices/%c/#\npattern read users/%u/inbox\npattern write x/%count\n",
        )
        .unwrap();
        let table: [(ClientInfo<'_>, &str, bool, bool); 12] = [
            (anon("dev1"), "devices/dev1/temp", true, true),
            (anon("dev1"), "devices/dev2/temp", false, false),
            (user("dev1", "bob"), "devices/dev1/temp", true, true),
            (user("dev1", "bob"), "users/bob/inbox", false, true),
            (user("dev1", "bob"), "users/alice/inbox", false, false),
            // `%u` never matches a client without a user name.
            (anon("dev1"), "users//inbox", false, false),
            (anon("dev1"), "users/%u/inbox", false, false),
            // `%c` inside a longer level is literal text.
            (anon("dev1"), "x/%count", true, false),
            (anon("dev1"), "x/dev1ount", false, false),
            // A substitution that cannot be one level never matches.
            (anon("a/b"), "devices/a/b/x", false, false),
            (anon("+"), "devices/+/x", false, false),
            (user("c", ""), "users//inbox", false, false),
        ];
        for (client, topic, publish, read) in table {
            let valid_name = check_name(topic).is_ok();
            assert_eq!(
                rules.can_publish(&client, topic),
                publish && valid_name,
                "{client:?} pub {topic}"
            );
            assert_eq!(
                rules.can_receive(&client, topic),
                read && valid_name,
                "{client:?} recv {topic}"
            );
        }
        assert!(rules.can_subscribe(&anon("dev1"), "devices/dev1/#"));
        assert!(!rules.can_subscribe(&anon("dev1"), "devices/+/#"));
        assert!(!rules.can_subscribe(&anon("#"), "devices/#"));
        assert!(!rules.can_subscribe(&anon("+"), "devices/+/x"));
    }

    #[test]
    fn deny_takes_precedence_over_any_allow() {
        let rules = AclRules::parse(
            "topic readwrite a/#\ntopic deny a/secret\nuser u\ntopic deny a/#\ntopic a/b\npattern readwrite a/#\npattern deny a/%c/private\n",
        )
        .unwrap();
        let a = anon("c1");
        assert!(rules.can_publish(&a, "a/public"));
        assert!(!rules.can_publish(&a, "a/secret"));
        assert!(!rules.can_receive(&a, "a/secret"));
        assert!(!rules.can_subscribe(&a, "a/secret"));
        // An overlapping deny does not refuse the subscription; delivery is filtered.
        assert!(rules.can_subscribe(&a, "a/#"));
        // A deny pattern applies to everyone, overriding user and pattern allows.
        assert!(!rules.can_publish(&a, "a/c1/private"));
        assert!(rules.can_publish(&a, "a/c2/private"));
        // The user's own deny beats the allowing pattern and its own allow.
        let u = user("c2", "u");
        assert!(!rules.can_publish(&u, "a/b"));
        assert!(!rules.can_subscribe(&u, "a/b"));
        // A deny pattern whose substitution is impossible denies (fail closed).
        assert!(!rules.can_publish(&anon("x/y"), "a/public"));
        // A deny pattern with `%u` does not apply to an anonymous client.
        let r = AclRules::parse("pattern readwrite #\npattern deny %u/#\n").unwrap();
        assert!(r.can_publish(&a, "x/y"));
        assert!(!r.can_publish(&user("c", "x"), "x/y"));
        assert!(r.can_publish(&user("c", "x"), "y/x"));
    }

    #[test]
    fn subscribe_needs_a_read_rule_covering_the_filter() {
        let rules = AclRules::parse(
            "topic read a/#\ntopic read b/+\ntopic write c/#\ntopic deny a/secret/#\n",
        )
        .unwrap();
        let c = anon("c1");
        let table = [
            ("a/+/b", true),
            ("a/#", true),
            ("a", true),
            ("b/+", true),
            ("b/x", true),
            ("b/#", false),
            ("b/+/x", false),
            ("c/x", false),
            ("#", false),
            ("a/secret/x", false),
            ("a/secret/#", false),
            ("a/+/x", true),
            ("a/#/b", false),
            ("a/b+", false),
            ("", false),
        ];
        for (filter, expected) in table {
            assert_eq!(rules.can_subscribe(&c, filter), expected, "sub {filter}");
        }
    }

    #[test]
    fn dollar_topics_need_a_dollar_rule() {
        let rules =
            AclRules::parse("topic readwrite #\ntopic read $SYS/#\ntopic deny +/x\n").unwrap();
        let c = anon("c1");
        assert!(rules.can_publish(&c, "a/b"));
        assert!(!rules.can_publish(&c, "$SYS/broker/uptime"));
        assert!(rules.can_receive(&c, "$SYS/broker/uptime"));
        assert!(rules.can_subscribe(&c, "$SYS/#"));
        assert!(rules.can_subscribe(&c, "#"));
        assert!(!rules.can_publish(&c, "$other/a"));
        // `deny +/x` does not reach `$SYS/x` [MQTT-4.7.2-1].
        assert!(rules.can_receive(&c, "$SYS/x"));
        assert!(!rules.can_receive(&c, "a/x"));
        let only_hash = AclRules::parse("topic readwrite #\n").unwrap();
        assert!(!only_hash.can_subscribe(&c, "$SYS/#"));
        assert!(!only_hash.can_receive(&c, "$SYS/uptime"));
    }

    #[test]
    fn invalid_request_topics_are_refused() {
        let rules = AclRules::parse("topic readwrite #\n").unwrap();
        let c = anon("c1");
        for topic in ["", "a/+", "a/#", "#", "a\0b"] {
            assert!(!rules.can_publish(&c, topic), "pub {topic:?}");
            assert!(!rules.can_receive(&c, topic), "recv {topic:?}");
        }
        for filter in ["", "a/#/b", "a#", "+a", "a\0"] {
            assert!(!rules.can_subscribe(&c, filter), "sub {filter:?}");
        }
        for filter in ["#", "+/+", "a/#"] {
            assert!(rules.can_subscribe(&c, filter), "sub {filter:?}");
        }
    }

    #[test]
    fn parse_accepts_comments_blanks_spaces_and_default_access() {
        let text = "# comment\n\n   \n  # indented comment\r\n\ttopic  read\t a/b \r\ntopic write with space/x\nuser  name with spaces \ntopic c\npattern deny d/%u\n";
        let rules = AclRules::parse(text).unwrap();
        let listed: Vec<AclRule> = rules.rules().collect();
        let expected = vec![
            AclRule::new(AclScope::Anonymous, AclAccess::Read, "a/b").unwrap(),
            AclRule::new(AclScope::Anonymous, AclAccess::Write, "with space/x").unwrap(),
            AclRule::new(
                AclScope::User("name with spaces".into()),
                AclAccess::ReadWrite,
                "c",
            )
            .unwrap(),
            AclRule::new(AclScope::Pattern, AclAccess::Deny, "d/%u").unwrap(),
        ];
        assert_eq!(listed, expected);
    }

    #[test]
    fn parse_errors_carry_line_numbers() {
        let table: [(&str, AclError); 9] = [
            (
                "topic a\nfoo bar\n",
                AclError::UnknownKeyword {
                    line: 2,
                    keyword: "foo".into(),
                },
            ),
            (
                "\n\ntopic readonly a/b\n",
                AclError::InvalidAccess {
                    line: 3,
                    access: "readonly".into(),
                },
            ),
            ("topic\n", AclError::MissingTopic { line: 1 }),
            ("# c\npattern read\n", AclError::MissingTopic { line: 2 }),
            ("topic a\nuser\n", AclError::MissingUsername { line: 2 }),
            (
                "user u\ntopic read a/#/b\n",
                AclError::InvalidTopic {
                    line: 2,
                    topic: "a/#/b".into(),
                    reason: "`#` must be the last level [MQTT-4.7.1-1]",
                },
            ),
            (
                "pattern write a/b+\n",
                AclError::InvalidTopic {
                    line: 1,
                    topic: "a/b+".into(),
                    reason: "a wildcard must fill a whole level [MQTT-4.7.1-1] [MQTT-4.7.1-2]",
                },
            ),
            (
                "topic a\ntopic\tREAD a\n",
                AclError::InvalidAccess {
                    line: 2,
                    access: "READ".into(),
                },
            ),
            (
                "Topic a\n",
                AclError::UnknownKeyword {
                    line: 1,
                    keyword: "Topic".into(),
                },
            ),
        ];
        for (text, expected) in table {
            let err = AclRules::parse(text).unwrap_err();
            assert_eq!(err.line(), expected.line());
            assert_eq!(err, expected, "{text:?}");
            assert!(
                err.to_string()
                    .starts_with(&format!("ACL line {}", err.line().unwrap()))
            );
        }
    }

    #[test]
    fn rule_builder_validates_and_remove_undoes_add() {
        assert!(matches!(
            AclRule::new(AclScope::Pattern, AclAccess::Read, "a/#/b"),
            Err(AclError::InvalidRuleTopic { .. })
        ));
        assert_eq!(
            AclRule::new(AclScope::Anonymous, AclAccess::Read, "")
                .unwrap_err()
                .line(),
            None
        );
        let mut rules = AclRules::new();
        let rule = AclRule::new(AclScope::User("u".into()), AclAccess::Write, "a/+").unwrap();
        rules.add(rule.clone());
        let u = user("c", "u");
        assert!(rules.can_publish(&u, "a/b"));
        assert_eq!(rules.rules().collect::<Vec<_>>(), vec![rule.clone()]);
        assert!(rules.remove(&rule));
        assert!(!rules.remove(&rule));
        assert!(rules.is_empty());
        assert_eq!(rules, AclRules::new());
        assert!(!rules.can_publish(&u, "a/b"));
        for access in [
            AclAccess::Read,
            AclAccess::Write,
            AclAccess::ReadWrite,
            AclAccess::Deny,
        ] {
            assert_eq!(AclAccess::from_keyword(access.keyword()), Some(access));
        }
    }

    #[test]
    fn allow_all_allows_everything() {
        let c = anon("c");
        assert!(AllowAll.can_publish(&c, "$SYS/x"));
        assert!(AllowAll.can_subscribe(&c, "#"));
        assert!(AllowAll.can_receive(&c, "a"));
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just(String::new()),
                "[a-c$]{1,3}",
                Just("+".to_owned()),
                Just("#".to_owned()),
                ".{0,3}"
            ],
            1..5,
        )
        .prop_map(|levels| levels.join("/"))
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![Just(String::new()), "[a-c]{1,3}", "\\PC{1,3}"],
            1..5,
        )
        .prop_map(|levels| levels.join("/"))
    }

    fn valid_filter_strategy() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(
                prop_oneof![Just(""), Just("a"), Just("b"), Just("$a"), Just("+")],
                0..4,
            ),
            any::<bool>(),
        )
            .prop_filter_map("empty filter", |(levels, hash)| {
                let mut levels: Vec<&str> = levels;
                if hash {
                    levels.push("#");
                }
                let filter = levels.join("/");
                (!filter.is_empty()).then_some(filter)
            })
    }

    fn small_universe() -> Vec<String> {
        let alphabet = ["", "a", "b", "c", "$a"];
        let mut all: Vec<String> = Vec::new();
        let mut layer: Vec<String> = alphabet.iter().map(|l| (*l).to_owned()).collect();
        for _ in 0..5 {
            all.extend(layer.iter().cloned());
            layer = layer
                .iter()
                .flat_map(|t| alphabet.iter().map(move |l| format!("{t}/{l}")))
                .collect();
        }
        // A topic name is never empty [MQTT-4.7.3-1].
        all.retain(|t| !t.is_empty());
        all
    }

    proptest! {
        #[test]
        fn checks_never_panic(
            rule in topic_strategy(),
            request in topic_strategy(),
            client_id in ".{0,4}",
            username in proptest::option::of(".{0,4}"),
        ) {
            let text = format!("topic {rule}\ntopic deny {request}\nuser u\npattern {rule}\npattern deny %c/%u/{rule}\n");
            if let Ok(rules) = AclRules::parse(&text) {
                let client = ClientInfo { client_id: &client_id, username: username.as_deref() };
                let _ = rules.can_publish(&client, &request);
                let _ = rules.can_subscribe(&client, &request);
                let _ = rules.can_receive(&client, &request);
            }
        }

        #[test]
        fn readwrite_hash_pattern_allows_every_non_dollar_topic(
            topic in name_strategy(),
            client_id in "[a-z]{1,4}",
            username in proptest::option::of("[a-z]{0,4}"),
        ) {
            let rules = AclRules::parse("pattern readwrite #\n").unwrap();
            let client = ClientInfo { client_id: &client_id, username: username.as_deref() };
            let not_dollar = !topic.starts_with('$');
            let expected = check_name(&topic).is_ok() && not_dollar;
            prop_assert_eq!(rules.can_publish(&client, &topic), expected);
            prop_assert_eq!(rules.can_receive(&client, &topic), expected);
            // As a filter, wildcards included: `#` covers every filter not naming `$` topics.
            let expected = check_filter(&topic).is_ok() && not_dollar;
            prop_assert_eq!(rules.can_subscribe(&client, &topic), expected);
        }

        /// Covering is exactly "every topic the filter matches, the rule matches", checked
        /// against every topic of up to 5 levels over a small alphabet (with `c`, a level no
        /// filter names, and `$a`).
        #[test]
        fn covering_is_exact_on_small_universe(
            rule in valid_filter_strategy(),
            filter in valid_filter_strategy(),
        ) {
            let universe = small_universe();
            let subset = universe
                .iter()
                .all(|topic| !matches(&filter, topic) || matches(&rule, topic));
            prop_assert_eq!(covers(&rule, &filter), subset, "{} covers {}", rule, filter);
        }
    }
}
