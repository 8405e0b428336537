"""emolens in the browser: the ES module in ``js/`` (detect → crop → classify → track on onnxruntime-web, the
vendored runtime in ``js/ort/``), the manifest it loads and the static export (:mod:`emolens.web.site`)."""

from .site import BROWSER_MAX_PIXELS, JS_DIR, SiteExport, WebError, browser_detectors, export_site, manifest

__all__ = ["BROWSER_MAX_PIXELS", "JS_DIR", "SiteExport", "WebError", "browser_detectors", "export_site", "manifest"]
