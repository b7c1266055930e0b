"""The page's own script (run once when it loads): messages for clicks beside the picture, and the webcam button's
label.

Gradio maps a click on an image to its pixel and ignores a click in the image box beside the picture (the box is
larger than a scaled-down frame). The script does the same mapping and, for such a click, presses a hidden button
of that tab, whose handler puts a message in the status line. It also renames the webcam's start button, which
Gradio labels "Record", to say what it does here.
"""

HIDDEN_CLASS = "trackon2-hidden"
OUTSIDE_BUTTONS = {"frame_view": "frame_view_outside", "live_view": "live_view_outside"}  # image id -> button id
START_LABEL, STOP_LABEL = "Start tracking", "Stop tracking"

PAGE_SCRIPT = """
() => {
  const style = document.createElement("style");
  style.textContent = ".%(hidden)s { display: none !important; }";
  document.head.appendChild(style);
  const beside = (event, img) => {
    const r = img.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
    const x = Math.round((event.clientX - r.left - (r.width - img.naturalWidth * s) / 2) / s);
    const y = Math.round((event.clientY - r.top - (r.height - img.naturalHeight * s) / 2) / s);
    return x < 0 || x >= img.naturalWidth || y < 0 || y >= img.naturalHeight;
  };
  const buttons = %(buttons)s;
  document.addEventListener("click", (event) => {
    for (const [view, button] of Object.entries(buttons)) {
      const box = event.target.closest && event.target.closest(`#${view} .image-container > button`);
      const img = box && box.querySelector("img");
      if (img && img.naturalWidth > 0 && beside(event, img)) document.getElementById(button)?.click();
    }
  }, true);
  const labels = {"Record": "%(start)s", "Stop": "%(stop)s"};
  const relabel = () => {
    for (const button of document.querySelectorAll("#live_camera button")) {
      const walker = document.createTreeWalker(button, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.trim();
        if (labels[text]) node.textContent = labels[text];
      }
    }
  };
  new MutationObserver(relabel).observe(document.body, {subtree: true, childList: true, characterData: true});
  relabel();
  return [];
}
""" % {"hidden": HIDDEN_CLASS, "buttons": str(OUTSIDE_BUTTONS).replace("'", '"'), "start": START_LABEL,
       "stop": STOP_LABEL}
