"""URLs of the demo: ``path("", include("testproject.demo.urls"))``."""

from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/", views.new_job, name="new-job"),
    path("jobs/<str:job_id>/start", views.start_job, name="start-job"),
    path("chat/", views.post_chat, name="chat"),
]
