"""What the notification server and the task server share as HTTP servers."""
