"""A generator of realistic B2B sales leads for several tenants whose ``converted``
label has different drivers per tenant (no network, reproducible by ``seed``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Tenant names, in the order ``leads(n_tenants=k)`` uses the first k of them.
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark",
           "wayne", "wonka", "cyberdyne", "tyrell")

# -- vocabularies -------------------------------------------------------------
_FIRST = """james mary john patricia robert jennifer michael linda william elizabeth
david barbara richard susan joseph jessica thomas sarah charles karen daniel nancy matthew lisa
anthony betty mark sandra paul ashley steven kimberly andrew emily kenneth donna joshua michelle
kevin carol brian amanda george melissa luis ana jorge lucia hans anna klaus julia pierre marie
jean camille raj priya wei li kenji yuki""".split()
_LAST = """smith johnson williams brown jones garcia miller davis rodriguez martinez
hernandez lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson
white harris sanchez clark ramirez lewis robinson walker young allen king wright scott torres
nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts mueller
schmidt schneider fischer weber dubois moreau laurent bernard patel sharma kumar chen wang tanaka
sato""".split()
_CO_PREFIX = """north south blue red green silver golden bright clear swift prime
summit apex nova terra lumen vertex quantum pioneer harbor cedar maple river stone iron crystal
atlas orion polar""".split()
_CO_SUFFIX = """tech labs systems logistics analytics works soft data cloud group
partners health retail energy foods media""".split()
_TLD = ["com", "com", "com", "io", "de", "co.uk", "fr", "es", "net"]
_FREEMAIL = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"]
_FREEMAIL_P = np.array([0.5, 0.2, 0.15, 0.15])

# (label, seniority in [0, 1])
_SENIORITY = [("Intern", 0.0), ("Assistant", 0.1), ("Coordinator", 0.15), ("Specialist", 0.2),
              ("Analyst", 0.2), ("Associate", 0.25), ("Manager", 0.45), ("Sr. Manager", 0.55),
              ("Head", 0.65), ("Director", 0.7), ("Sr. Director", 0.8), ("VP", 0.9),
              ("SVP", 0.95)]
_SENIORITY_P = np.array([3, 4, 5, 8, 8, 6, 14, 8, 5, 12, 7, 8, 3], float)
_FUNCTION = ["Sales Ops", "Sales", "Marketing", "Marketing Operations", "Demand Generation",
             "IT", "Engineering", "Finance", "Procurement", "Operations", "Customer Success",
             "Data & Analytics", "Revenue Operations", "Growth"]
# whole titles that do not follow "<seniority> <function>"
_SPECIAL = [("CEO & Founder", 1.0), ("CEO", 1.0), ("Founder", 1.0), ("Owner", 0.9),
            ("President", 1.0), ("intern", 0.0), ("student", 0.0), ("Consultant", 0.3),
            ("CTO", 1.0), ("CFO", 1.0)]

_SOURCES = ["Web", "Webinar", "Trade Show", "Referral", "Paid Search", "Partner",
            "Cold Call", "Content Download", "Select"]
_SOURCES_P = np.array([20, 10, 8, 8, 16, 7, 8, 10, 4], float)
# effect of lead_source on the log-odds where a tenant's model uses it (missing -> -0.5)
_SOURCE_EFFECT = np.array([0.0, 0.8, 0.4, 1.4, -0.3, 0.6, -1.2, -0.2, -0.5])

_COUNTRIES = ["United States", "Germany", "United Kingdom", "France", "Spain", "Canada",
              "Mexico", "Brazil", "India", "Australia", "Netherlands", "Select"]

# note phrases per (language, sentiment); sentiment -1, 0, +1
_NOTES = {
    ("en", 1): ["Very interested, loved the demo.", "Great call, wants a proposal.",
                "Excited about the product, asked for pricing.", "Loved the demo!",
                "Strong fit, champion is enthusiastic.", "Happy with the trial, wants to expand.",
                "Really impressed by the reporting features.", "Keen to move forward quickly."],
    ("en", 0): ["Asked for more information.", "Downloaded the whitepaper.",
                "Left a voicemail.", "Requested a callback next week.",
                "Attended the webinar.", "Met at the booth.", "Sent the brochure.",
                "Evaluating options this quarter."],
    ("en", -1): ["Not interested, too expensive.", "Unhappy with the price, no budget.",
                 "Not a fit, bad timing.", "Complained about the onboarding, frustrated.",
                 "Angry about the cold outreach, unsubscribe.", "Terrible experience with a competitor, wary.",
                 "Rejected the offer.", "No interest at all."],
    ("es", 1): ["Muy interesado, le encantó la demo.", "Excelente llamada, quiere una propuesta.",
                "Contento con la prueba."],
    ("es", 0): ["Pidió más información.", "Descargó el documento.", "Llamar la próxima semana."],
    ("es", -1): ["No le interesa, demasiado caro.", "Sin presupuesto este año.",
                 "Mala experiencia, no quiere seguir."],
    ("de", 1): ["Sehr interessiert, die Demo hat gefallen.", "Gutes Gespräch, möchte ein Angebot.",
                "Begeistert vom Produkt."],
    ("de", 0): ["Bittet um weitere Informationen.", "Hat das Whitepaper heruntergeladen.",
                "Rückruf nächste Woche."],
    ("de", -1): ["Kein Interesse, zu teuer.", "Kein Budget, schlechter Zeitpunkt.",
                 "Unzufrieden mit dem Preis."],
    ("fr", 1): ["Très intéressé, a adoré la démo.", "Excellent appel, veut une proposition.",
                "Content de l'essai."],
    ("fr", 0): ["Demande plus d'informations.", "A téléchargé le livre blanc.",
                "Rappeler la semaine prochaine."],
    ("fr", -1): ["Pas intéressé, trop cher.", "Pas de budget, mauvais moment.",
                 "Mécontent du prix."],
}
_NOTE_TAIL = {
    "en": ["Follow up in {} weeks.", "Team of {} users.", "Budget review in {} months."],
    "es": ["Seguimiento en {} semanas.", "Equipo de {} personas."],
    "de": ["Nachfassen in {} Wochen.", "Team mit {} Personen."],
    "fr": ["Relancer dans {} semaines.", "Équipe de {} personnes."],
}
_LANGS = ("en", "es", "de", "fr")
_LANG_P = np.array([0.7, 0.1, 0.1, 0.1])

# Drivers of `converted` per tenant: log-odds coefficients on standardised
# [spend, seniority, web_visits, lead_source, note sentiment, free-mail address].
_DRIVERS = ("spend", "seniority", "web_visits", "lead_source", "sentiment", "freemail")
_TENANT_COEF = {
    "acme": [1.3, 1.7, 0.1, 0.0, 0.2, 0.0],      # big spenders and senior titles
    "globex": [0.0, 0.1, 1.5, 1.0, 0.0, 0.0],    # engaged visitors from good sources
    "initech": [0.1, 0.0, 0.0, 0.0, 1.7, -1.8],  # happy notes, company (not free-mail) emails
}
_BASE_RATE = (0.25, 0.35, 0.30, 0.22, 0.38, 0.28, 0.33, 0.24, 0.36, 0.30)


def _tenant_coefficients(index: int, name: str) -> np.ndarray:
    """Fixed (seed-independent) driver weights of tenant ``index``."""
    if name in _TENANT_COEF:
        return np.array(_TENANT_COEF[name])
    rng = np.random.default_rng(1000 + index)
    coef = rng.normal(0, 0.3, len(_DRIVERS))
    strong = rng.choice(len(_DRIVERS), size=2, replace=False)
    coef[strong] = rng.choice([-1, 1], size=2) * rng.uniform(1.2, 1.8, size=2)
    return coef


def _pick(rng, values, n, p=None):
    """``n`` draws from ``values`` as an Arrow string array (vectorised)."""
    if p is not None:
        p = np.asarray(p, float) / np.sum(p)
    return _take(values, rng.choice(len(values), size=n, p=p))


def _take(values, index) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(index))


def _join(*parts) -> pa.Array:
    """Element-wise concatenation of Arrow string arrays or Python strings."""
    return pc.binary_join_element_wise(*parts, "")


def _digits(rng, n, lo, hi) -> pa.Array:
    return pc.cast(pa.array(rng.integers(lo, hi, n)), pa.string())


def _blank(values: pa.Array, mask) -> pa.Array:
    """``values`` with nulls (missing) where ``mask`` is true."""
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), values)


def _intercept(eta: np.ndarray, rate: float) -> float:
    """The intercept a with mean(sigmoid(a + eta)) == rate (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(mid + eta)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _ids(n: int, seed: int) -> pa.Array:
    """``n`` distinct 16-hex-digit ids (a bijection of the row number, no loop)."""
    mult = np.uint64(0x9E3779B97F4A7C15)
    offset = np.uint64((seed * 0x5851F42D4C957F2D + 0x14057B7EF767814F) % 2**64)
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) * mult + offset
        x ^= x >> np.uint64(29)  # still a bijection; hides the arithmetic progression
    hexed = np.frombuffer(x.astype(">u8").tobytes().hex().encode("ascii"), dtype="S16")
    return _join("L-", pc.cast(pa.array(hexed), pa.string()))


def _titles(rng, n):
    """Business titles as free text, and the seniority (0..1) behind each."""
    s_idx = rng.choice(len(_SENIORITY), size=n, p=_SENIORITY_P / _SENIORITY_P.sum())
    sen = _take([s for s, _ in _SENIORITY], s_idx)
    level = np.array([v for _, v in _SENIORITY])[s_idx]
    func = _pick(rng, _FUNCTION, n)
    forms = [_join(sen, " of ", func), _join(sen, ", ", func),
             _join(func, " ", sen), _join(sen, " ", func)]
    title = pc.choose(pa.array(rng.choice(4, size=n, p=[0.35, 0.2, 0.15, 0.3])), *forms)
    case = rng.random(n)
    title = pc.if_else(pa.array(case < 0.10), pc.utf8_lower(title), title)
    title = pc.if_else(pa.array(case > 0.97), pc.utf8_upper(title), title)
    special = rng.random(n) < 0.12
    sp_idx = rng.integers(0, len(_SPECIAL), n)
    title = pc.if_else(pa.array(special), _take([t for t, _ in _SPECIAL], sp_idx), title)
    level = np.where(special, np.array([v for _, v in _SPECIAL])[sp_idx], level)
    return _blank(title, rng.random(n) < 0.03), level


def _emails(rng, n, tenant_idx, n_tenants):
    """Contact emails (company or free-mail), the free-mail flag and a company effect."""
    first_i = rng.integers(0, len(_FIRST), n)
    first, last = _take(_FIRST, first_i), _pick(rng, _LAST, n)
    initial = _take([f[0] for f in _FIRST], first_i)
    # 30 prospect companies per tenant (sizes differ: a spend effect per company)
    n_co = 30
    pre = rng.integers(0, len(_CO_PREFIX), n_tenants * n_co)
    suf = rng.integers(0, len(_CO_SUFFIX), n_tenants * n_co)
    tld = rng.integers(0, len(_TLD), n_tenants * n_co)
    domains = [f"{_CO_PREFIX[a]}{_CO_SUFFIX[b]}.{_TLD[c]}" for a, b, c in zip(pre, suf, tld)]
    co_effect = rng.normal(0, 0.6, n_tenants * n_co)
    co = tenant_idx * n_co + rng.integers(0, n_co, n)
    company_local = pc.choose(pa.array(rng.choice(3, size=n, p=[0.5, 0.3, 0.2])),
                              _join(first, ".", last), _join(initial, last), first)
    free_local = pc.choose(pa.array(rng.choice(3, size=n, p=[0.5, 0.2, 0.3])),
                           _join(first, ".", last, _digits(rng, n, 10, 100)),
                           _join(first, "_", last),
                           _join(initial, last, _digits(rng, n, 1, 9999)))
    freemail = rng.random(n) < 0.3
    email = pc.if_else(pa.array(freemail),
                       _join(free_local, "@", _pick(rng, _FREEMAIL, n, _FREEMAIL_P)),
                       _join(company_local, "@", _take(domains, co)))
    odd = rng.random(n)
    email = pc.if_else(pa.array(odd < 0.01), pa.scalar("n/a"), email)
    email = _blank(email, (odd >= 0.01) & (odd < 0.03))
    return email, freemail.astype(float), np.where(freemail, -0.7, co_effect[co])


def _notes(rng, n):
    """Free-text notes in four languages and the sentiment (-1, 0, +1) of each."""
    lang = rng.choice(len(_LANGS), size=n, p=_LANG_P)
    sentiment = rng.choice([-1, 0, 1], size=n, p=[0.25, 0.45, 0.30])
    keys = [(lg, s) for lg in _LANGS for s in (-1, 0, 1)]
    sizes = np.array([len(_NOTES[k]) for k in keys])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group = lang * 3 + (sentiment + 1)
    note = _take([p for k in keys for p in _NOTES[k]],
                 starts[group] + (rng.random(n) * sizes[group]).astype(int))
    tails = [t.split("{}") for lg in _LANGS for t in _NOTE_TAIL[lg]]
    tail_sizes = np.array([len(_NOTE_TAIL[lg]) for lg in _LANGS])
    tail_starts = np.concatenate([[0], np.cumsum(tail_sizes)[:-1]])
    tail_i = tail_starts[lang] + (rng.random(n) * tail_sizes[lang]).astype(int)
    tail = _join(_take([t[0] for t in tails], tail_i), _digits(rng, n, 2, 40),
                 _take([t[1] for t in tails], tail_i))
    note = pc.if_else(pa.array(rng.random(n) < 0.4), _join(note, " ", tail), note)
    missing = rng.random(n) < 0.15
    return _blank(note, missing), np.where(missing, 0, sentiment)


def leads(n_rows: int = 2000, n_tenants: int = 3, seed: int = 0) -> pd.DataFrame:
    """Generate realistic B2B sales leads for ``n_tenants`` tenants.

    Every tenant is a company selling to its own prospects; whether a lead
    ``converted`` follows a logistic model whose drivers differ per tenant, so
    per-tenant models really differ:

    ========  ==========================================================
    acme      spend and title seniority
    globex    web visits and lead source (Referral, Webinar good; Cold Call bad),
              mostly through an interaction: many visits *and* a good source
    initech   note sentiment (positive wording) and a company, not free-mail, email
    others    two strong drivers drawn from a fixed per-tenant random stream
    ========  ==========================================================

    Base rates are 22-38% per tenant; a good model reaches a hold-out AUROC of
    roughly 0.8 with 500+ rows per tenant. The output depends only on the
    arguments; 100,000 rows take well under 2 s (everything is vectorised).

    Parameters
    ----------
    n_rows : int
        Number of leads (rows).
    n_tenants : int
        Number of tenants, 1 to ``len(TENANTS)``; names are the first of
        :data:`TENANTS` (``acme``, ``globex``, ``initech``, ...).
    seed : int
        Random seed.

    Returns
    -------
    pandas.DataFrame
        Columns ``lead_id`` (unique id), ``tenant``, ``email`` (company and
        free-mail domains, a few ``"n/a"`` and missing), ``title`` (free text
        such as "Sr. Director of Sales Ops"), ``lead_source`` and ``country``
        (categoricals with missing values and a "Select" placeholder),
        ``spend`` (lognormal, ~15% missing), ``web_visits`` (int), ``created``
        (datetime64, ~18 months from 2024-01-01), ``note`` (free text in
        English, Spanish, German or French, positive, neutral or negative;
        ~15% missing) and ``converted`` (int 0/1, the label).
    """
    from ..errors import ConfigError

    if not 1 <= int(n_tenants) <= len(TENANTS):
        raise ConfigError(f"n_tenants={n_tenants} is out of range",
                          hint=f"use 1 to {len(TENANTS)}")
    if int(n_rows) < 1:
        raise ConfigError(f"n_rows={n_rows} must be at least 1")
    n, k = int(n_rows), int(n_tenants)
    rng = np.random.default_rng(seed)

    share = np.clip(1 - 0.1 * np.arange(k), 0.3, 1)
    tenant_idx = rng.choice(k, size=n, p=share / share.sum())
    tenant = _take(TENANTS[:k], tenant_idx)

    email, freemail, co_effect = _emails(rng, n, tenant_idx, k)
    title, seniority = _titles(rng, n)

    src_i = rng.choice(len(_SOURCES), size=n, p=_SOURCES_P / _SOURCES_P.sum())
    src_missing = rng.random(n) < 0.08
    lead_source = _blank(_take(_SOURCES, src_i), src_missing)
    src_effect = np.where(src_missing, -0.5, _SOURCE_EFFECT[src_i])

    # each tenant sells in its own mix of countries
    country_p = np.random.default_rng(7).dirichlet(np.full(len(_COUNTRIES) - 1, 0.7), size=k)
    country_p = np.hstack([country_p * 0.96, np.full((k, 1), 0.04)])  # 4% "Select"
    u = rng.random(n)[:, None]
    country = _take(_COUNTRIES, (u > np.cumsum(country_p, axis=1)[tenant_idx]).sum(axis=1))
    country = _blank(country, rng.random(n) < 0.10)

    log_spend = rng.normal(8.0, 1.0, n) + co_effect
    spend = np.round(np.exp(log_spend), 2)
    spend_missing = rng.random(n) < 0.15
    spend[spend_missing] = np.nan

    visit_rate = np.exp(rng.normal(1.0, 0.6, n))
    web_visits = rng.poisson(visit_rate).astype(np.int64)

    seconds = rng.integers(0, 548 * 86400, n).astype("timedelta64[s]")
    created = (np.datetime64("2024-01-01T00:00:00", "s") + seconds).astype("datetime64[ns]")

    note, sentiment = _notes(rng, n)

    # standardised drivers -> per-tenant log-odds -> label
    drivers = np.column_stack([
        np.where(spend_missing, 0.0, (log_spend - 8.0) / 1.15),
        (seniority - 0.5) * 3.2,
        (np.log1p(web_visits) - 1.15) / 0.6,
        src_effect,
        sentiment * 1.2,
        freemail * 2 - 0.6,
    ])
    coef = np.array([_tenant_coefficients(i, TENANTS[i]) for i in range(k)])
    eta = np.einsum("ij,ij->i", drivers, coef[tenant_idx])
    # globex converts on an interaction (engaged visitors *from good sources*)
    # with a step in visits: a shape trees find and a linear model cannot, so
    # per-tenant tournaments have a reason to crown different families.
    is_globex = tenant_idx == TENANTS.index("globex") if k > 1 else np.zeros(n, bool)
    step = ((drivers[:, 2] > 0.4) & (drivers[:, 3] > 0)).astype(float)
    eta[is_globex] += 3.0 * step[is_globex] - 1.2 * (drivers[is_globex, 2] > 1.6)
    for i in range(k):
        rows = tenant_idx == i
        if rows.any():
            eta[rows] += _intercept(eta[rows][:20000], _BASE_RATE[i])
    converted = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.int64)

    def text(values: pa.Array) -> pd.Series:
        return pd.Series(values, dtype="str")

    return pd.DataFrame({
        "lead_id": text(_ids(n, seed)), "tenant": text(tenant), "email": text(email),
        "title": text(title), "lead_source": text(lead_source), "country": text(country),
        "spend": spend, "web_visits": web_visits, "created": created, "note": text(note),
        "converted": converted,
    })
