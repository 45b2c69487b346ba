"""URLs of the demo: ``path("", include("testproject.demo.urls"))``."""

from pathlib import Path

from django.urls import path
from django.views.static import serve

from . import views

app_name = "demo"

#: The page's script and style sheet. The demo serves them itself so that it runs the
#: same under any server and DEBUG setting; a real project uses collectstatic.
ASSETS = Path(__file__).resolve().parent / "static" / "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/", views.new_job, name="new-job"),
    path("jobs/<str:job_id>/start", views.start_job, name="start-job"),
    path("chat/", views.post_chat, name="chat"),
    path("assets/<path:path>", serve, {"document_root": ASSETS}, name="asset"),
]
