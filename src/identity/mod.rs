//! Who is asking: presented credentials → an identity, per source.

pub mod ldap;
