//! The navigation: every area of the back office, and the roles that see it. A link here is
//! only a convenience; each handler checks the role itself (the role × route test walks both).

use kassa_auth::Role;

use crate::i18n::Lang;

const INSTITUTION: &[Role] = &[Role::InstitutionAdmin, Role::InstitutionReviewer];
const ALL: &[Role] = &[Role::InstitutionAdmin, Role::InstitutionReviewer, Role::MerchantOwner, Role::MerchantStaff];
const ADMIN_OWNER: &[Role] = &[Role::InstitutionAdmin, Role::MerchantOwner];

/// One area: its path, the message id of its label, who sees it.
const AREAS: &[(&str, &str, &[Role])] = &[
    ("/", "nav-dashboard", ALL),
    ("/transactions", "nav-transactions", ALL),
    ("/refunds", "nav-refunds", ALL),
    ("/recon", "nav-recon", INSTITUTION),
    ("/corrections", "nav-corrections", INSTITUTION),
    ("/payouts", "nav-payouts", ALL),
    ("/merchants", "nav-merchants", INSTITUTION),
    ("/terminals", "nav-terminals", ALL),
    ("/operators", "nav-operators", ADMIN_OWNER),
    ("/settings", "nav-settings", ADMIN_OWNER),
    ("/api-keys", "nav-api-keys", ADMIN_OWNER),
    ("/test-transaction", "nav-test-transaction", ADMIN_OWNER),
    ("/deposits", "nav-deposits", ALL),
    ("/audit", "nav-audit", INSTITUTION),
    ("/backups", "nav-backups", &[Role::InstitutionAdmin]),
];

/// A link of the navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    /// Where it goes.
    pub href: &'static str,
    /// Its label, in words.
    pub label: String,
    /// It is the current area.
    pub current: bool,
}

/// The navigation of `role`, the area of `path` marked current.
pub fn items(lang: Lang, role: Role, path: &str) -> Vec<NavItem> {
    AREAS
        .iter()
        .filter(|(_, _, roles)| roles.contains(&role))
        .map(|(href, label, _)| NavItem {
            href,
            label: lang.t(label),
            current: if *href == "/" { path == "/" } else { path == *href || path.starts_with(&format!("{href}/")) },
        })
        .collect()
}

/// Every area's path and the roles that may open it (the role × route test walks these).
pub fn areas() -> impl Iterator<Item = (&'static str, &'static [Role])> {
    AREAS.iter().map(|(href, _, roles)| (*href, *roles))
}
