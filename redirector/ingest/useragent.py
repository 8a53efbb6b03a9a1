"""Browser, OS and device class of a user agent, from the maintained `ua-parser` (uap-core's rules, with
the `ua-parser-rs` accelerator when installed). Only the ingester calls it, once per distinct agent (the
Enricher memoises it), never the redirect.

Browser and OS are uap-core's family names as they are ("Mobile Safari", "Chrome Mobile", "Instagram",
"Mac OS X", "Chrome OS"; "Other" when unknown), so analysts can look them up in uap-core. uap-core does not
tell phones from tablets or desktops: the device class is derived here from its device brand and family
and the OS family."""

from __future__ import annotations

from dataclasses import dataclass

import ua_parser

OTHER = "Other"
# uap-core's device brands and families that mean a tablet ("Generic_Android_Tablet": Android without
# "Mobile", the convention Google asks tablet browsers to follow).
TABLET_BRANDS = frozenset({"Generic_Android_Tablet"})
TABLET_FAMILY_WORDS = ("iPad", "Kindle", "Tablet", "Galaxy Tab", "Nexus 7", "Nexus 9", "Nexus 10")
# Operating systems that run on phones (a tablet was told apart above).
MOBILE_SYSTEMS = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Firefox OS", "Tizen"}
)
MOBILE_BRANDS = frozenset({"Generic_Android", "Generic Feature Phone", "Generic Smartphone"})
DESKTOP_SYSTEMS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "Debian", "FreeBSD", "OpenBSD"}
)


@dataclass(frozen=True, slots=True)
class Description:
    device: str  # mobile, tablet, desktop, other
    browser: str
    os: str


class UserAgents:
    """One parser per process, built at start-up (loading uap-core's rules takes a moment)."""

    def __init__(self, parser: ua_parser.Parser | None = None) -> None:
        self._parser = parser or ua_parser.Parser.from_matchers(ua_parser.load_builtins())

    def describe(self, user_agent: str) -> Description:
        parsed = self._parser.parse(user_agent)
        browser = parsed.user_agent.family if parsed.user_agent else OTHER
        os = parsed.os.family if parsed.os else OTHER
        brand = (parsed.device.brand or "") if parsed.device else ""
        family = parsed.device.family if parsed.device else ""
        return Description(device_class(os, brand, family), browser, os)


def device_class(os: str, brand: str, family: str) -> str:
    """Pure: the device class from uap-core's OS family and device brand and family."""
    if brand in TABLET_BRANDS or any(word in family for word in TABLET_FAMILY_WORDS):
        return "tablet"
    if os in MOBILE_SYSTEMS or brand in MOBILE_BRANDS:
        return "mobile"
    if os in DESKTOP_SYSTEMS:
        return "desktop"
    return "other"
