// Carries ?next= into the form and shows a failed attempt (no inline script: the CSP forbids it).
const params = new URLSearchParams(location.search);
if (params.get("next")) document.getElementById("next").value = params.get("next");
if (params.get("failed")) document.getElementById("failed").hidden = false;
