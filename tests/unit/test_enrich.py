"""Enrichment rules, table-driven: bot and preview detection, device, browser, os, referer host, country."""

from __future__ import annotations

import pytest

from redirector.ingest.enrich import BotPatterns, Enricher, classify, referer_host
from redirector.ingest.useragent import UserAgents, device_class

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
INSTAGRAM_IAB = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 307.0.0.34.111 "
    "(iPhone14,5; iOS 17_1; en_US; en; scale=3.00; 1170x2532; 532277016)"
)
TIKTOK_IAB = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en "
    "WKWebView/1 BytedanceWebview/d8a21c6"
)
FACEBOOK_IAB = (
    "Mozilla/5.0 (Linux; Android 13; SM-S908B Build/TP1A.220624.014; wv) "
    "AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/119.0.6045.66 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/440.0.0.31.105;]"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
WINDOWS_EDGE = WINDOWS_CHROME + " Edg/120.0.2210.91"
MAC_FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:120.0) Gecko/20100101 Firefox/120.0"
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
    "Mobile/15E148 Safari/604.1"
)
SAMSUNG = (
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 "
    "Chrome/115.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CURL = "curl/8.4.0"


@pytest.fixture(scope="module")
def bots() -> BotPatterns:
    return BotPatterns()


@pytest.fixture(scope="module")
def agents() -> UserAgents:
    return UserAgents()


@pytest.fixture(scope="module")
def enricher(bots: BotPatterns, agents: UserAgents) -> Enricher:
    return Enricher(bots=bots, agents=agents)


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        (IPHONE_SAFARI, ""),
        (INSTAGRAM_IAB, ""),  # people tap creator links inside the apps: in-app browsers are people
        (TIKTOK_IAB, ""),
        (FACEBOOK_IAB, ""),
        (WINDOWS_CHROME, ""),
        (SAMSUNG, ""),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "preview:facebook"),
        ("facebookexternalhit/1.1 Facebot Twitterbot/1.0", "preview:facebook"),  # iMessage's fetcher
        ("Twitterbot/1.0", "preview:twitter"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "preview:slack"),
        ("WhatsApp/2.23.20.0 A", "preview:whatsapp"),
        ("TelegramBot (like TwitterBot)", "preview:telegram"),
        ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "preview:discord"),
        (
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "preview:linkedin",
        ),
        (GOOGLEBOT, "crawler:Googlebot/"),
        (CURL, "crawler:^curl"),
        ("", "no_user_agent"),
        ("   ", "no_user_agent"),
    ],
)
def test_bot_reason(bots: BotPatterns, agents: UserAgents, agent: str, reason: str) -> None:
    traits = classify(agent, bots, agents)
    assert traits.bot_reason == reason
    assert traits.is_bot == bool(reason)
    if reason:
        assert traits.device == "bot"


@pytest.mark.parametrize(
    ("agent", "device", "browser", "os"),
    [
        (IPHONE_SAFARI, "mobile", "Mobile Safari", "iOS"),
        (INSTAGRAM_IAB, "mobile", "Instagram", "iOS"),
        (TIKTOK_IAB, "mobile", "TikTok", "iOS"),
        (FACEBOOK_IAB, "mobile", "Facebook", "Android"),
        (WINDOWS_CHROME, "desktop", "Chrome", "Windows"),
        (WINDOWS_EDGE, "desktop", "Edge", "Windows"),
        (MAC_FIREFOX, "desktop", "Firefox", "Mac OS X"),
        (ANDROID_TABLET, "tablet", "Chrome", "Android"),
        (IPAD, "tablet", "Mobile Safari", "iOS"),
        (SAMSUNG, "mobile", "Samsung Internet", "Android"),
        ("SomethingElse/1.0", "other", "Other", "Other"),
    ],
)
def test_device_browser_os(
    bots: BotPatterns, agents: UserAgents, agent: str, device: str, browser: str, os: str
) -> None:
    traits = classify(agent, bots, agents)
    assert (traits.device, traits.browser, traits.os) == (device, browser, os)
    assert agents.describe(agent).device == device


@pytest.mark.parametrize(
    ("os", "brand", "family", "device"),
    [
        ("Android", "Generic_Android_Tablet", "SM-X710", "tablet"),  # Android without "Mobile"
        ("iOS", "Apple", "iPad", "tablet"),
        ("Android", "Amazon", "Kindle Fire HDX", "tablet"),
        ("iOS", "Apple", "iPhone", "mobile"),
        ("Android", "Samsung", "Samsung SM-S918B", "mobile"),
        ("Other", "Generic Feature Phone", "Generic Feature Phone", "mobile"),
        ("Windows Phone", "Nokia", "Lumia 950", "mobile"),
        ("Windows", "", "", "desktop"),
        ("Mac OS X", "Apple", "Mac", "desktop"),
        ("Chrome OS", "", "", "desktop"),
        ("Linux", "", "", "desktop"),
        ("Other", "", "", "other"),
        ("Other", "Spider", "Spider", "other"),  # crawlers are told by the bot rules, not here
    ],
)
def test_device_class(os: str, brand: str, family: str, device: str) -> None:
    assert device_class(os, brand, family) == device


def test_head_is_a_preview_unless_the_agent_names_one(enricher: Enricher) -> None:
    head = enricher.traits(IPHONE_SAFARI, is_head=True)
    assert (head.is_bot, head.bot_reason, head.device, head.os) == (True, "head", "bot", "iOS")
    assert enricher.traits("Twitterbot/1.0", is_head=True).bot_reason == "preview:twitter"
    assert enricher.traits(IPHONE_SAFARI, is_head=False).is_bot is False


@pytest.mark.parametrize(
    ("referer", "host"),
    [
        ("https://www.tiktok.com/@creator/video/1", "tiktok.com"),
        ("https://l.instagram.com/?u=x", "l.instagram.com"),
        ("HTTP://YouTube.COM/watch?v=1", "youtube.com"),
        ("android-app://com.zhiliaoapp.musically/", "com.zhiliaoapp.musically"),
        ("", ""),
        ("not a url", ""),
        ("http://[::1", ""),  # unparsable
    ],
)
def test_referer_host(referer: str, host: str) -> None:
    assert referer_host(referer) == host


@pytest.mark.parametrize(
    ("stored", "prefix", "country"),
    [
        ("DE", "81.2.69.0/24", "DE"),  # the trusted header wins
        ("", "81.2.69.0/24", "GB"),
        ("", "8.8.8.0/24", "US"),
        ("", "2a00:1450:4001::/48", "DE"),
        ("", "10.1.2.0/24", ""),  # private: no country
        ("", "", ""),
        ("", "garbage", ""),
        ("zz", "81.2.69.0/24", "GB"),  # not a trusted value: looked up
    ],
)
def test_country(enricher: Enricher, stored: str, prefix: str, country: str) -> None:
    assert enricher.country(stored, prefix) == country


def test_memoised(bots: BotPatterns, agents: UserAgents) -> None:
    enricher = Enricher(bots=bots, agents=agents)
    for _ in range(3):
        enricher.traits(GOOGLEBOT, is_head=False)
        enricher.country("", "81.2.69.0/24")
    assert enricher.cache_info() == {"traits": 2, "country": 2}
