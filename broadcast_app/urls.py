"""URLs of the stream view: ``path("broadcast/", include("broadcast_app.urls"))``.

``reverse("broadcast_app:stream", kwargs={"topic": name})`` gives a topic's stream URL.
"""

from django.urls import re_path

from .views import BroadcastStreamView

app_name = "broadcast_app"

urlpatterns = [
    # Any string: the view answers 400 for names the channel rejects, empty included.
    re_path(r"^(?P<topic>[\s\S]*)\Z", BroadcastStreamView.as_view(), name="stream"),
]
