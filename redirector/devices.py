"""The viewer's OS and device class for smart-link rules, from the user agent, on the redirect path.

A cheap, pure classifier: a handful of substring tests on the lower-cased agent, no regular expression,
no data file. The ingester's full parse (uap-core's rules, redirector/ingest/useragent.py) stays off the
server: loading it costs seconds and megabytes, and its precision (browser families, versions) is not what
a rule asks. Only the coarse classes of the contract are told apart:

    os:     ios, android, windows, macos, linux, other
    device: mobile, tablet, desktop, bot

Order matters and is tested (tests/unit/test_devices.py against real agents): iOS agents say "like Mac OS
X", Android agents say "Linux", a bot may claim any browser, and an iPad in desktop mode (iPadOS 13+) says
"Macintosh" and is read as macOS/desktop, as every server-side classifier must."""

from __future__ import annotations

OS_VALUES = ("ios", "android", "windows", "macos", "linux", "other")
DEVICE_VALUES = ("mobile", "tablet", "desktop", "bot")

# Tokens of automated clients and link-preview fetchers: the agent is a bot whatever else it claims.
_BOT_TOKENS = (
    "bot",
    "crawl",
    "spider",
    "slurp",
    "facebookexternalhit",
    "preview",
    "headless",
    "curl/",
    "wget/",
    "python-",
    "httpclient",
    "okhttp/",
    "go-http-client",
    "java/",
    "scrapy",
    "lighthouse",
    # link-preview fetchers without a bot token (the ingester's PREVIEW_FETCHERS)
    "whatsapp/",
    "slack-imgproxy",
    "embedly",
    "iframely",
    "vkshare",
    "mastodon/",
    "google-pagerenderer",
)
_IOS_TOKENS = ("iphone", "ipad", "ipod", "cpu os ", "ios ")
_TABLET_TOKENS = ("ipad", "tablet", "kindle", "silk/", "playbook")
_MOBILE_TOKENS = ("mobi", "iphone", "ipod", "phone", "opera mini")


def classify(user_agent: str) -> tuple[str, str]:
    """(os, device) of a user agent; an empty agent is a bot (browsers always send one)."""
    agent = user_agent.lower()
    if not agent.strip():
        return "other", "bot"
    os = _os(agent)
    if any(token in agent for token in _BOT_TOKENS):
        return os, "bot"
    return os, _device(agent, os)


def _os(agent: str) -> str:
    if "windows" in agent:
        return "windows"  # before iOS/Android: Windows Phone agents name both
    if any(token in agent for token in _IOS_TOKENS):
        return "ios"
    if "android" in agent:
        return "android"
    if "mac os x" in agent or "macintosh" in agent:
        return "macos"
    if "linux" in agent or "x11" in agent or "cros" in agent:
        return "linux"
    return "other"


def _device(agent: str, os: str) -> str:
    if any(token in agent for token in _TABLET_TOKENS):
        return "tablet"
    if os == "android":
        # Android's convention: phones say "Mobile", tablets do not.
        return "mobile" if "mobile" in agent else "tablet"
    if os == "ios" or any(token in agent for token in _MOBILE_TOKENS):
        return "mobile"
    return "desktop"
