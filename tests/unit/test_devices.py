"""The redirect's cheap OS/device classifier against real user agents (browsers, in-app browsers, bots)."""

import pytest

from redirector.devices import DEVICE_VALUES, OS_VALUES, classify

AGENTS = [
    # iPhone Safari, Chrome and in-app browsers
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1", "ios", "mobile"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/119.0.6045.109 Mobile/15E148 Safari/604.1", "ios", "mobile"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Mobile/15E148 Instagram 307.0.2.28.109 (iPhone14,5; iOS 17_0; en_US; en; scale=3.00; 1170x2532; "
     "529467870)", "ios", "mobile"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US",
     "ios", "mobile"),
    ("Mozilla/5.0 (iPod touch; CPU iPhone OS 12_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/12.1.2 Mobile/15E148 Safari/604.1", "ios", "mobile"),
    # iPad: the old agent says iPad; iPadOS 13+ in desktop mode says Macintosh (read as a Mac, as anyone)
    ("Mozilla/5.0 (iPad; CPU OS 15_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/15.6.1 Mobile/15E148 Safari/604.1", "ios", "tablet"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Safari/605.1.15", "macos", "desktop"),
    # Android phones and tablets (tablets do not say "Mobile")
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.6045.163 Mobile Safari/537.36", "android", "mobile"),
    ("Mozilla/5.0 (Linux; Android 13; SM-S918B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like "
     "Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/441.0.0.23.105;]",
     "android", "mobile"),
    ("Mozilla/5.0 (Linux; Android 12; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Safari/537.36", "android", "tablet"),
    ("Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/119.3.1 "
     "like Chrome/119.0.6045.193 Safari/537.36", "android", "tablet"),
    ("Mozilla/5.0 (Android 13; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0", "android", "mobile"),
    # desktops
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72", "windows", "desktop"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0", "windows",
     "desktop"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 "
     "Safari/537.36", "linux", "desktop"),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "linux", "desktop"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 "
     "Safari/537.36", "linux", "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:120.0) Gecko/20100101 Firefox/120.0", "macos",
     "desktop"),
    # Windows Phone names Android and iPhone too: it is Windows, and a phone
    ("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, "
     "like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063", "windows", "mobile"),
    # bots and fetchers, whatever browser they claim
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.6045.199 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     "android", "bot"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "other", "bot"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "other", "bot"),
    ("Twitterbot/1.0", "other", "bot"),
    ("WhatsApp/2.23.20.0", "other", "bot"),  # a preview fetcher without a bot token
    ("curl/8.4.0", "other", "bot"),
    ("python-requests/2.31.0", "other", "bot"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/119.0.0.0 "
     "Safari/537.36", "linux", "bot"),
    ("", "other", "bot"),
    ("   ", "other", "bot"),
    ("SomethingElse/1.0", "other", "desktop"),
]  # fmt: skip


@pytest.mark.parametrize(("agent", "os", "device"), AGENTS)
def test_real_agents(agent: str, os: str, device: str) -> None:
    assert classify(agent) == (os, device)


def test_every_answer_is_a_contract_value() -> None:
    for agent, _, _ in AGENTS:
        os, device = classify(agent)
        assert os in OS_VALUES and device in DEVICE_VALUES
