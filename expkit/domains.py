"""Well-known e-mail domains, shared by the e-mail features and drift summaries.

A module of its own (no imports) so that drift summaries, computed while a model
is still loading, do not import the feature package and scikit-learn with it.
"""

#: Free-mail providers: their domain says nothing about the sender's company.
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com",
    "hotmail.com", "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com",
    "aol.com", "icloud.com", "me.com", "mac.com", "protonmail.com", "proton.me", "gmx.com",
    "gmx.de", "gmx.net", "web.de", "mail.com", "mail.ru", "yandex.ru", "yandex.com",
    "qq.com", "163.com", "126.com", "zoho.com", "fastmail.com", "tutanota.com", "orange.fr",
    "free.fr", "libero.it", "t-online.de",
})
