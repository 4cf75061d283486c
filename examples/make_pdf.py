#!/usr/bin/env python3
"""Generate examples/handbook/security-policy.pdf for the fictional
Brackenfold Instruments Ltd handbook corpus.

Uses fpdf2 with core (latin-1) fonts only. The creation date is fixed so
that re-running the script produces byte-identical output.

    .venv/bin/python examples/make_pdf.py
"""
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

OUT = Path(__file__).resolve().parent / "handbook" / "security-policy.pdf"

TITLE = "Information Security Policy"
SUBTITLE = (
    "Brackenfold Instruments Ltd. Policy ISP-01, version 4.1, effective "
    "1 March 2026. Owner: Information Security Manager (Tobias Wrenfield)."
)

# Each section: (heading, [paragraphs]). A paragraph starting with "- " is
# rendered as a bullet point.
SECTIONS = [
    ("1. Purpose and scope", [
        "This policy sets out the minimum security rules that every person "
        "working for Brackenfold must follow. It applies to employees, "
        "contractors, temporary staff and anyone else who is given a "
        "Brackenfold account, badge or device. Breaches of this policy may "
        "lead to disciplinary action. Practical how-to instructions, such as "
        "resetting a password or connecting to the VPN, are in the IT Help "
        "Guide; this document states the rules.",
    ]),
    ("2. Passwords", [
        "Passwords protect our customers' calibration data and our own "
        "designs. The following rules apply to every Brackenfold account.",
        "- Passwords must be at least 14 characters long. We recommend a "
        "passphrase of four or more unrelated words.",
        "- Accounts with administrator or privileged access must use at "
        "least 20 characters.",
        "- Standard user passwords do not expire on a schedule. You must "
        "change your password immediately if you suspect it has been seen "
        "or disclosed.",
        "- Privileged (administrator) account passwords must be rotated every "
        "90 days, and whenever an administrator leaves the team.",
        "- You cannot reuse any of your previous 12 passwords.",
        "- Never share a password, including with the Service Desk or your "
        "manager. Brackenfold staff will never ask you for it.",
        "- Passwords must be stored only in the approved password manager, "
        "Vaultwright, which is installed on every company laptop.",
    ]),
    ("3. Multi-factor authentication", [
        "Multi-factor authentication (MFA) is mandatory for all staff "
        "accounts, with no exceptions. This covers email, the VPN, TimeHarbour, "
        "Tallyroll and every cloud service that supports it.",
        "- The approved second factor is the Brackenfold Verify app on a "
        "company or personal smartphone, or a FIDO2 hardware security key "
        "issued by the Service Desk.",
        "- SMS codes are only accepted as a temporary fallback for up to 7 "
        "days while a replacement factor is set up.",
        "- Administrators and Finance staff must use a FIDO2 hardware key; "
        "the app alone is not sufficient for these roles.",
        "- If you receive an MFA prompt you did not start, reject it and "
        "report it as a security incident (section 6).",
    ]),
    ("4. Data classification", [
        "All information we create or receive must be treated according to "
        "one of four classification levels. If you are unsure, treat the "
        "information as CONFIDENTIAL and ask the information owner.",
        "- PUBLIC: approved for anyone to see, for example published "
        "datasheets, press releases and the public website.",
        "- INTERNAL: for Brackenfold staff only, for example the intranet, "
        "this handbook and team meeting notes. This is the default level.",
        "- CONFIDENTIAL: limited to people who need it, for example customer "
        "contracts, salary information, personal data and unreleased product "
        "designs. It must be encrypted when sent outside the company.",
        "- SEALED: our most sensitive information, for example calibration "
        "master keys, acquisition plans and board papers. Access is granted "
        "by name only, it may never be stored on removable media, and it may "
        "not be printed without written approval from the information owner.",
        "Documents and emails at CONFIDENTIAL or SEALED level must carry the "
        "classification label in the header. The label is applied with the "
        "Classify button in Outlook, Word and Excel.",
    ]),
    ("5. Clean desk and clear screen", [
        "Offices are shared with visitors, cleaners and colleagues from other "
        "teams, so information must not be left out.",
        "- Lock your screen (Windows key + L) whenever you leave your desk. "
        "Screens lock automatically after 5 minutes of inactivity.",
        "- At the end of each working day, clear your desk completely. "
        "CONFIDENTIAL and SEALED papers must be locked in your pedestal or a "
        "team cabinet, never left out overnight.",
        "- Printed material that is no longer needed goes in the grey locked "
        "confidential waste bins, never in ordinary recycling.",
        "- Whiteboards in meeting rooms must be wiped after use.",
        "Facilities staff carry out unannounced clean desk checks every month "
        "and report results to department heads.",
    ]),
    ("6. Reporting security incidents", [
        "A security incident is anything that could harm the confidentiality, "
        "integrity or availability of our information: for example a "
        "phishing email you clicked on, an unexpected MFA prompt, data sent "
        "to the wrong person, or malware warnings.",
        "Report every suspected incident to the Security Incident Response "
        "Team at soc@brackenfold.example within 1 hour of discovering it. "
        "Outside office hours, also phone the on-call security line on "
        "extension 7733. Do not try to investigate yourself, and do not "
        "delete suspicious emails: forward them as attachments to the same "
        "address.",
        "Lost or stolen devices are reported to the Service Desk following "
        "the procedure in the IT Help Guide; the Service Desk will open the "
        "security incident for you.",
        "Incidents involving personal data may have to be reported to the "
        "regulator within 72 hours, which is why fast internal reporting "
        "matters. Nobody will be disciplined for reporting an honest mistake "
        "promptly.",
    ]),
    ("7. Visitors and physical access", [
        "All visitors must be pre-registered by their host in the Gatehouse "
        "visitor system at least 24 hours before arrival.",
        "- On arrival, visitors sign in at reception and receive an orange "
        "visitor badge, which must be worn visibly at all times on site.",
        "- Visitors must be escorted by their host at all times, including "
        "to and from the toilets and the canteen.",
        "- Visitor badges are valid for one day only and must be handed back "
        "at reception when the visitor leaves.",
        "- Visitors may not enter the Calibration Laboratory or the server "
        "room without written approval from the Information Security Manager.",
        "Staff must wear their own blue Brackenfold badge on site and must "
        "not let anyone follow them through a secure door (tailgating). If "
        "you see someone on site without a badge, politely offer to take "
        "them to reception.",
    ]),
    ("8. Review", [
        "This policy is reviewed every 12 months by the Information Security "
        "Manager and approved by the Executive Committee. Questions about "
        "this policy can be sent to infosec@brackenfold.example.",
    ]),
]


class PolicyPDF(FPDF):
    def header(self):
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, "Brackenfold Instruments Ltd - Information Security "
                  "Policy (ISP-01) - Classification: INTERNAL", align="R")
        self.ln(10)
        self.set_text_color(0, 0, 0)

    def footer(self):
        self.set_y(-15)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def build() -> bytes:
    pdf = PolicyPDF(format="A4")
    pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=timezone.utc))
    pdf.set_title(TITLE)
    pdf.set_author("Brackenfold Instruments Ltd")
    pdf.set_subject("Information security rules for all staff")
    pdf.set_creator("examples/make_pdf.py")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(20, 15, 20)
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(0, 9, TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    pdf.set_font("Helvetica", "I", 9.5)
    pdf.multi_cell(0, 5, SUBTITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    for heading, paragraphs in SECTIONS:
        # Keep a heading together with the start of its section.
        if pdf.get_y() > pdf.page_break_trigger - 30:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 13)
        pdf.multi_cell(0, 7, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
        pdf.set_font("Helvetica", "", 10.5)
        for para in paragraphs:
            para.encode("latin-1")  # fail loudly on non-latin-1 text
            if para.startswith("- "):
                pdf.set_x(pdf.l_margin + 4)
                pdf.cell(5, 5.5, "-")
                pdf.multi_cell(0, 5.5, para[2:], new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            else:
                pdf.multi_cell(0, 5.5, para, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2.5)
        pdf.ln(2)

    return bytes(pdf.output())


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = build()
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
