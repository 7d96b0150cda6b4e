//! Who may connect, and what they may do: the password checks, the access rules, the
//! enhanced authentication methods, and the failed-login throttle.

use crate::acl::Authorizer;
use crate::auth::{ClientInfo, EnhancedAuthenticator, Passwords};
use crate::throttle::LoginThrottle;

/// The authentication and authorization services, as the core holds them.
pub(crate) struct Access {
    /// How User Names and Passwords are checked.
    pub(crate) passwords: Passwords,
    /// The access rules.
    authorizer: Box<dyn Authorizer>,
    /// Enhanced authentication methods (MQTT 5 §4.12).
    enhanced: Vec<Box<dyn EnhancedAuthenticator>>,
    /// Recent failed logins.
    pub(crate) throttle: LoginThrottle,
}

impl Access {
    /// The services handed in at construction.
    pub(crate) fn new(
        passwords: Passwords,
        authorizer: Box<dyn Authorizer>,
        enhanced: Vec<Box<dyn EnhancedAuthenticator>>,
    ) -> Self {
        Self {
            passwords,
            authorizer,
            enhanced,
            throttle: LoginThrottle::default(),
        }
    }

    /// Replaces the access rules.
    pub(crate) fn set_authorizer(&mut self, authorizer: Box<dyn Authorizer>) {
        self.authorizer = authorizer;
    }

    /// Replaces the enhanced authentication methods.
    pub(crate) fn set_enhanced(&mut self, enhanced: Vec<Box<dyn EnhancedAuthenticator>>) {
        self.enhanced = enhanced;
    }

    /// The enhanced authentication method called `name`.
    pub(crate) fn method(&self, name: &str) -> Option<&dyn EnhancedAuthenticator> {
        self.enhanced
            .iter()
            .find(|a| a.method() == name)
            .map(|a| &**a)
    }

    /// May `client` publish to `topic`?
    pub(crate) fn can_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        self.authorizer.can_publish(client, topic)
    }

    /// May `client` subscribe to `filter`?
    pub(crate) fn can_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool {
        self.authorizer.can_subscribe(client, filter)
    }

    /// May `client` receive a message on `topic`?
    pub(crate) fn can_receive(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        self.authorizer.can_receive(client, topic)
    }
}
