"""Render a picture of the LiverTumorSeg module panel from its Qt Designer file, without 3D Slicer.

Usage: python render_panel_layout.py OUT.png [--project DIR] [--project-python PY] [--width PX] [--overwrite]

An existing OUT.png (such as the committed docs/images/panel_layout.png) is replaced only with --overwrite.

The result is NOT a 3D Slicer screenshot. LiverTumorSeg/Resources/UI/LiverTumorSeg.ui is loaded with plain Qt
(PySide6 QUiLoader, "offscreen" platform, Fusion style). Slicer's own widgets are replaced: ctkCollapsibleButton
by a QGroupBox with the same title (every section shown expanded), qMRMLNodeComboBox by a QComboBox showing a
"(placeholder: ...)" text (or its noneDisplay text), and any other qMRML*/qSlicer*/ctk* widget (e.g.
qMRMLTableView) by a framed "(placeholder: CLASS ...)" label. A red note at the top says so.

The texts the module fills in at start-up (model list, model description, preprocessing line, device line)
come from the module's own helpers (LiverTumorSegModuleLib.panel_text) and the bundled model packages. Those
need the project's dependencies, so they are computed by the project's Python (default DIR/.venv/bin/python)
in a child process and passed back as JSON; this script itself needs only PySide6.
The state shown is the panel after loading: default model selected, no CT volume, so Segment is disabled, the
window spin boxes are disabled (override unticked) and the progress bar is hidden, as the module does.
"""
import argparse
import json
import os
from pathlib import Path
import subprocess
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the .ui connects Slicer signals (mrmlSceneChanged) that the stand-ins lack: harmless, do not log them
os.environ.setdefault("QT_LOGGING_RULES", "qt.core.qobject.connect=false")

try:
    from PySide6.QtCore import QFile, Qt  # noqa: E402
    from PySide6.QtGui import QFont  # noqa: E402
    from PySide6.QtUiTools import QUiLoader  # noqa: E402
    from PySide6.QtWidgets import (QApplication, QComboBox, QFrame, QGroupBox, QLabel, QProgressBar,  # noqa: E402
                                   QVBoxLayout, QWidget)
except ImportError as exc:  # even --help ended in a ModuleNotFoundError traceback
    if __name__ != "__main__":
        raise
    print(f"error: render_panel_layout.py needs PySide6 ({exc}); install it in a separate venv "
          f"(python3 -m venv /tmp/render && /tmp/render/bin/pip install PySide6) and run the script with that "
          f"venv's python.", file=sys.stderr)
    sys.exit(2)

NOTE = ("Panel layout rendered from LiverTumorSeg.ui with plain Qt (not a 3D Slicer screenshot); "
        "Slicer widgets shown as placeholders.")

# Run with the project's Python: the panel texts exactly as LiverTumorSeg.py sets them on start-up.
TEXTS_CODE = r"""
import json, sys
root = sys.argv[1]
sys.path[:0] = [root, root + "/LiverTumorSeg"]
from LiverTumorSegLib.package import list_installed_models, read_package_metadata
from LiverTumorSegModuleLib import panel_text
entries = list_installed_models()
items = panel_text.model_choices(entries)
index = next((i for i, e in enumerate(entries) if e.get("default")), 0)
metadata = read_package_metadata(items[index]["path"]) if items else {}
print(json.dumps({
    "models": [item["text"] for item in items], "model_index": index,
    "model_info": panel_text.describe_model(metadata) if items else "No model installed. Use 'Add model file...'.",
    "preprocessing": panel_text.describe_preprocessing(metadata.get("preprocessing") or {}),
    "device": panel_text.device_text(""),
}))
"""


def panel_texts(project, python):
    """The module's start-up texts, computed by ``python`` (which must import the project's libraries)."""
    out = subprocess.run([python, "-c", TEXTS_CODE, project], check=True, stdout=subprocess.PIPE,
                         universal_newlines=True, cwd=project)
    return json.loads(out.stdout.strip().splitlines()[-1])


class PlaceholderLoader(QUiLoader):
    """QUiLoader that builds plain Qt stand-ins for Slicer/CTK classes it does not know."""

    STAND_INS = {"qMRMLWidget": QWidget, "ctkCollapsibleButton": QGroupBox, "qMRMLNodeComboBox": QComboBox}

    def createWidget(self, class_name, parent=None, name=""):
        if class_name in self.STAND_INS:
            widget = self.STAND_INS[class_name](parent)
        elif class_name.startswith(("qMRML", "qSlicer", "ctk")):
            widget = QLabel(parent)
        else:
            return super().createWidget(class_name, parent, name)
        widget.setObjectName(name)
        widget.setProperty("slicerClass", class_name)
        return widget


def replace_slicer_widgets(panel):
    """Give the stand-ins the look of the real widgets: titles, placeholder texts, frames."""
    for widget in panel.findChildren(QWidget):
        cls = widget.property("slicerClass")
        if cls == "ctkCollapsibleButton":
            widget.setTitle(str(widget.property("text") or ""))  # "text" became a dynamic property
        elif cls == "qMRMLNodeComboBox":
            none_display = widget.property("noneDisplay")
            if widget.property("noneEnabled") and none_display:
                widget.addItem(str(none_display))
            else:
                types = widget.property("nodeTypes") or []
                widget.addItem("(placeholder: " + ", ".join([cls] + list(types)) + ")")
        elif cls and isinstance(widget, QLabel):
            what = " - the lesion table node is shown here" if cls == "qMRMLTableView" else ""
            widget.setText("(placeholder: %s%s)" % (cls, what))
            widget.setAlignment(Qt.AlignCenter)
            widget.setWordWrap(True)
            widget.setFrameShape(QFrame.Box)
            widget.setAutoFillBackground(True)
            widget.setStyleSheet("QLabel { background: white; border: 1px solid black; }")


def fill_texts(panel, texts):
    """What LiverTumorSegWidget.setup() does to a fresh panel with no CT volume selected."""
    combo = panel.findChild(QComboBox, "modelComboBox")
    combo.addItems(texts["models"])
    combo.setCurrentIndex(texts["model_index"])
    panel.findChild(QLabel, "modelInfoLabel").setText(texts["model_info"])
    panel.findChild(QLabel, "preprocessingLabel").setText(texts["preprocessing"])
    panel.findChild(QLabel, "gpuInfoLabel").setText(texts["device"])
    panel.findChild(QProgressBar, "progressBar").setVisible(False)
    override = panel.findChild(QWidget, "windowOverrideCheckBox").isChecked()
    for name in ("windowLevelSpinBox", "windowWidthSpinBox"):
        panel.findChild(QWidget, name).setEnabled(override)
    panel.findChild(QWidget, "segmentButton").setEnabled(False)


def render(ui_path, texts, out_path, width):
    app = QApplication.instance() or QApplication(["render_panel_layout"])
    app.setStyle("Fusion")
    app.setFont(QFont("DejaVu Sans", 9))
    ui_file = QFile(ui_path)
    if not ui_file.open(QFile.ReadOnly):
        raise SystemExit("cannot read " + ui_path)
    panel = PlaceholderLoader().load(ui_file)
    ui_file.close()
    replace_slicer_widgets(panel)
    fill_texts(panel, texts)

    window = QWidget()
    layout = QVBoxLayout(window)
    note = QLabel(NOTE)
    note.setWordWrap(True)
    note.setStyleSheet("QLabel { color: #b00000; font-style: italic; }")
    layout.addWidget(note)
    layout.addWidget(panel)
    window.setFixedWidth(width)
    height = max(window.sizeHint().height(), layout.totalHeightForWidth(width))
    window.resize(width, height)
    window.show()
    app.processEvents()
    if not window.grab().save(out_path):
        raise SystemExit("cannot write " + out_path)
    print("wrote %s (%dx%d)" % (out_path, window.width(), window.height()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    here = str(Path(__file__).resolve().parents[1])
    parser.add_argument("--project", default=os.environ.get("LIVERTUMORSEG_ROOT", here),
                        help="LiverTumorSeg checkout (default: the one holding this script, or $LIVERTUMORSEG_ROOT)")
    parser.add_argument("--project-python", default="",
                        help="Python with the project's dependencies (default PROJECT/.venv/bin/python)")
    parser.add_argument("--width", type=int, default=572, help="picture width in pixels (default 572)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = parser.parse_args(argv)
    if args.width < 1:
        parser.error(f"--width must be 1 pixel or more, got {args.width}")
    if Path(args.out).suffix.lower() != ".png":
        parser.error(f"OUT '{args.out}' must end in .png (the picture is written as PNG)")
    if os.path.exists(args.out) and not args.overwrite:  # it replaced any file, the committed picture included
        parser.error(f"'{args.out}' already exists; pass --overwrite to replace it or choose another path")
    project = os.path.abspath(args.project)
    python = args.project_python or os.path.join(project, ".venv", "bin", "python")
    texts = panel_texts(project, python)
    ui_path = os.path.join(project, "LiverTumorSeg", "Resources", "UI", "LiverTumorSeg.ui")
    render(ui_path, texts, os.path.abspath(args.out), args.width)


if __name__ == "__main__":
    try:  # this script runs without the project's packages (PySide6 only): its own one-line errors
        sys.exit(main())
    except FileNotFoundError as exc:
        print(f"error: {exc.filename or exc}: not found; check --project (the repository folder) and "
              f"--project-python.", file=sys.stderr)
        sys.exit(2)
    except subprocess.CalledProcessError as exc:
        print(f"error: the project's Python ({exc.cmd[0] if exc.cmd else '?'}) failed (exit {exc.returncode}) "
              f"computing the panel texts; check --project-python (it needs the project's packages).",
              file=sys.stderr)
        sys.exit(2)
