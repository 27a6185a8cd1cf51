import Foundation

/// The languages of the screens: Korean first, English available.
enum Language: String, CaseIterable, Sendable {
    case ko, en

    var other: Language { self == .ko ? .en : .ko }

    /// Every word on the screens, by key.
    var strings: [String: String] { self == .ko ? Strings.ko : Strings.en }

    func callAsFunction(_ key: String) -> String { strings[key] ?? key }
}

/// The words of the UI (DOMAIN.md's glossary, Korean first).
enum Strings {
    static let ko: [String: String] = [
        "appName": "외래 진료", "skipToContent": "본문으로 건너뛰기", "languageName": "한국어",
        "otherLanguageName": "English", "desk": "원무과", "doctor": "의사",
        "examiner": "검사자",
        // desk
        "registration": "접수", "patientName": "환자명", "patientId": "환자번호", "birthDate": "생년월일",
        "phone": "연락처", "department": "진료과", "symptom": "증상", "register": "접수", "optional": "선택",
        "chooseDepartment": "진료과 선택", "board": "오늘의 진료 현황", "status": "상태", "since": "경과",
        "receivedAt": "접수 시각", "actions": "작업", "cancelReception": "접수 취소", "noVisits": "오늘 접수된 환자가 없습니다.",
        "cancelTitle": "접수 취소", "cancelReason": "취소 사유", "confirmCancel": "접수 취소", "back": "돌아가기",
        "boardLive": "2초마다 자동으로 갱신됩니다.", "search": "검색", "searchName": "이름으로 찾기",
        "allStatuses": "모든 상태", "previous": "이전", "next": "다음", "boardRange": "전체 {total}건 중 {from}–{to}",
        "boardSearch": "진료 현황 검색", "searchPatientId": "환자번호로 찾기", "patientVisits": "환자번호 %@ 접수 내역",
        "noPatientVisits": "이 환자번호로 접수된 내역이 없습니다.", "visitDateTime": "접수 일시",
        // the patient registry
        "patientSearch": "환자 검색", "name": "이름", "chartNumber": "환자번호", "sex": "성별", "address": "주소",
        "residentNumber": "주민등록번호", "sex.M": "남", "sex.F": "여", "sex.U": "미상", "ageYears": "%d세",
        "sexAge": "성별/나이", "newPatient": "신환 등록", "registerPatient": "신환 등록", "noPatientsFound": "찾는 환자가 없습니다. 신환으로 등록할 수 있습니다.",
        "chooseSex": "성별 선택", "confirmDistinct": "위 환자와 다른 사람임을 확인했습니다.",
        "possibleDuplicate": "이름과 생년월일이 같은 환자가 이미 등록되어 있습니다. 같은 분이면 아래에서 환자를 선택하세요. 다른 분이면 확인란을 선택하고 다시 등록하세요.",
        "duplicateResident": "같은 주민등록번호로 등록된 환자가 있습니다. 아래 환자를 선택하세요.",
        "patientVisitsTitle": "접수 내역", "registerToday": "오늘 접수", "correctPatient": "환자 정보 수정",
        "saveCorrection": "수정 저장", "mergedInto": "이 환자 정보는 환자번호 %@(으)로 병합되었습니다.", "openMerged": "병합된 환자 열기",
        "searchHint": "이름(앞부분), 생년월일, 환자번호, 연락처 중 하나 이상을 입력하세요.",
        "notice.patientRegistered": "신환으로 등록했습니다.", "notice.corrected": "환자 정보를 수정했습니다.",
        "error.searchEmpty": "검색할 항목을 하나 이상 입력해 주세요.",
        "error.stale": "다른 사람이 먼저 환자 정보를 수정했습니다. 최신 정보를 다시 불러왔으니 확인 후 다시 수정해 주세요.",
        "previousVisits": "이전 진료", "noPreviousVisits": "이전 진료 기록이 없습니다.", "walkIn": "간편 접수 (미등록 환자)",
        // doctor
        "worklist": "진료 대기 목록", "noDiagnoses": "진료할 환자가 없습니다.", "open": "열기", "patient": "환자",
        "orderExams": "검사 처방", "exams": "검사", "results": "검사 결과", "noOrders": "처방된 검사가 없습니다.",
        "completeConsultation": "진료 완료", "rejectConsultation": "진료 거부", "note": "소견", "reason": "사유",
        "closed": "이 진료는 종료되었습니다.", "resultsLive": "검사 결과는 도착하는 대로 표시됩니다.",
        "orderedAt": "처방 시각",
        // examiner
        "examWorklist": "검사 대기 목록", "noExams": "대기 중인 검사가 없습니다.", "examResult": "검사 결과",
        "performExam": "검사 시행", "cancelExam": "검사 취소", "cancelExamReason": "취소 사유", "refresh": "새로고침",
        "examsChanged": "검사 목록이 바뀌었습니다 · 새로고침",
        // notices
        "notice.registered": "접수되었습니다.", "notice.canceled": "접수가 취소되었습니다.",
        "notice.prescribed": "검사를 처방했습니다.", "notice.completed": "진료를 완료했습니다.",
        "notice.rejected": "진료를 거부했습니다.", "notice.performed": "검사 결과를 저장했습니다.",
        "notice.examCanceled": "검사를 취소했습니다.",
        // errors
        "error.conflict": "이미 상태가 바뀌어 처리할 수 없습니다. 현재 상태는 '%@'입니다. 최신 상태를 다시 불러왔습니다.",
        "error.notFound": "찾는 항목이 없습니다. 이미 처리되었거나 삭제되었을 수 있습니다.",
        "error.unavailable": "%@ 서비스에 지금 연결할 수 없습니다. 잠시 후 다시 시도해 주세요.",
        "error.failed": "요청을 처리하지 못했습니다. 잠시 후 다시 시도해 주세요.",
        "error.invalid": "입력한 내용을 확인해 주세요.", "error.chooseExam": "검사를 하나 이상 선택해 주세요.",
        "service.reception": "접수", "service.diagnosis": "진료", "service.examination": "검사",
        "service.patient-management": "진료 현황",
        // field rules
        "rule.required": "%@ 항목을 입력해 주세요.", "rule.tooLong": "%@ 항목이 너무 깁니다.",
        "rule.invalidFormat": "%@ 항목의 형식이 올바르지 않습니다.", "rule.invalidCharacters": "%@ 항목에 쓸 수 없는 문자가 있습니다.",
        "rule.inFuture": "%@ 항목은 미래 날짜일 수 없습니다.", "rule.duplicate": "같은 검사를 두 번 처방할 수 없습니다.",
        "rule.tooMany": "검사가 너무 많습니다.", "rule.outOfRange": "%@ 항목의 값이 범위를 벗어났습니다.",
        // time
        "justNow": "방금", "minutes": "%d분", "hoursMinutes": "%d시간 %d분",
        // sign-in
        "signIn": "로그인", "signOut": "로그아웃", "username": "아이디", "password": "비밀번호",
        "usernameRequired": "아이디를 입력해 주세요.", "passwordRequired": "비밀번호를 입력해 주세요.",
        "error.signIn": "아이디 또는 비밀번호가 올바르지 않습니다. 여러 번 틀리면 계정이 잠시 잠깁니다.",
        "signInProvider": "병원 통합 계정으로 로그인",
        "attachments": "첨부 파일", "attachFile": "파일 첨부", "chooseFile": "파일 선택",
        "dropHere": "여기에 파일을 끌어다 놓거나 선택하세요 (PNG, JPEG, PDF, DICOM · 최대 50 MB)",
        "uploading": "올리는 중", "openFile": "열기", "downloadFile": "내려받기", "noAttachments": "첨부 파일 없음",
        "notice.attached": "파일을 첨부했습니다.",
        "error.attachType": "PNG, JPEG, PDF, DICOM 파일만 첨부할 수 있습니다. 파일 내용이 이 형식이 아닙니다.",
        "error.attachSize": "파일이 너무 큽니다. 50 MB 이하만 첨부할 수 있습니다.",
        "error.attachInvalid": "빈 파일이거나 파일 이름을 쓸 수 없습니다.",
        "error.attachClosed": "결과가 기록되었거나 취소된 검사에는 파일을 첨부할 수 없습니다.",
        "error.attach": "파일을 첨부하지 못했습니다. 다시 시도해 주세요.",
        "error.provider": "통합 로그인 서버에 연결할 수 없습니다. 잠시 후 다시 시도해 주세요.",
        "error.providerSignIn": "통합 로그인을 완료하지 못했습니다. 다시 시도해 주세요.",
        "error.providerRole": "이 계정에는 원무과·의사·검사자·관리자 역할이 없습니다. 관리자에게 문의해 주세요.",
        "notice.signedOut": "로그아웃했습니다.", "role.desk": "원무과", "role.doctor": "의사", "role.examiner": "검사자",
        "role.admin": "관리자", "role.display": "현황판",
        "displayTitle": "대기실 현황판", "displayPick": "현황판에 띄울 진료과를 고르세요.",
        "displayCalling": "호출", "displayNext": "다음 순서", "displayWaiting": "대기",
        "displayPeople": "명", "displayNone": "대기 중인 환자가 없습니다.",
        "displayOffline": "연결이 끊겼습니다. 다시 연결하는 중입니다…",
        "displaySound": "소리 켜기",
        // calling (호출)
        "myRoom": "내 진료실", "room": "진료실", "noRoom": "선택 안 함", "chooseRoom": "선택", "workingIn": "지금 진료실:",
        "chooseRoomHint": "진료실을 고르면 그 진료과의 대기 순서대로 환자를 호출할 수 있습니다.",
        "queueNumber": "번호", "call": "호출", "recall": "재호출", "startConsultation": "진료 시작", "markAbsent": "부재",
        "undoStep": "되돌리기 (%@)", "step.CALL": "호출", "step.RECALL": "재호출", "step.START": "진료 시작",
        "step.NO_SHOW": "부재", "place.waiting": "대기", "place.called": "호출 %d회 · %@ · %@",
        "place.inConsultation": "진료 중 · %@ · %@", "place.noShow": "부재",
        "priority.EMERGENCY": "응급", "priority.CARE": "배려", "priority.NORMAL": "일반", "priority": "우선순위",
        "priorityCareLong": "배려 (고령·장애)", "priorityNormal": "일반", "priorityEmergency": "응급",
        "notice.called": "호출했습니다.", "notice.started": "진료를 시작했습니다.", "notice.markedAbsent": "부재로 표시했습니다.",
        "notice.undone": "되돌렸습니다.", "notice.prioritized": "우선순위를 바꿨습니다.",
        "changePriority": "우선순위", "priorityTitle": "우선순위 변경", "confirmPriority": "우선순위 변경",
        "place.calledShort": "호출 %d회 · %@", "place.inRoom": "진료 중 · %@", "queueNumberShort": "대기 번호",
        "stage.WAITING": "대기", "stage.CALLED": "호출 후 미입실", "stage.IN_CONSULTATION": "진료 중", "stage.EXAMS": "검사 중",
        "waitsTitle": "오래 기다리는 환자", "waitsNone": "기준 시간을 넘겨 기다리는 환자가 없습니다.",
        "waitsToday": "오늘 대기 시간 (접수→첫 호출)", "waitsOpen": "진행 중", "waitsAmber": "주의", "waitsRed": "경고",
        "waitsCalled": "호출", "waitsAverage": "평균", "waitsP90": "90%", "waitLevel.amber": "주의", "waitLevel.red": "경고",
        "sinceReceived": "접수 후", "stageTime": "현재 단계",
        "pairTitle": "대기실 화면 연결", "pairCode": "기기 코드", "pair": "연결",
        "pairHint": "관리자가 발급한 대기실 화면 기기 코드를 입력하세요. 연결하면 이 브라우저는 폐기될 때까지 대기실 화면만 엽니다.",
        "error.pairing": "연결할 수 없습니다. 코드가 틀렸거나 폐기된 기기입니다.",
        "error.chooseRoom": "먼저 진료실을 고르세요.", "error.chooseExamRoom": "먼저 검사실을 고르세요.",
        "myExamRoom": "내 검사실", "examRoom": "검사실", "workingInExamRoom": "지금 검사실:",
        "chooseExamRoomHint": "검사실을 고르면 그 검사실이 하는 검사를 대기 순서대로 호출할 수 있습니다.",
        "startExam": "검사 시작", "place.inExam": "검사 중 · %@ · %@", "notice.examStarted": "검사를 시작했습니다.",
        "refused.inExam": "이미 %@ 님이 %@에서 검사 중인 환자입니다.",
        "refused.calledBy": "이미 %@ 님이 %@(으)로 호출한 환자입니다.",
        "refused.inConsultation": "이미 %@ 님이 %@에서 진료 중인 환자입니다.",
        "refused.tooFewCalls": "아직 %d번만 호출했습니다. 부재로 표시하려면 더 호출하세요.",
        "refused.undo": "되돌릴 수 없습니다. 자신이 1분 안에 한 마지막 작업만 되돌릴 수 있습니다.",
        "refused.moved": "그사이 환자의 상태가 바뀌었습니다. 목록을 확인해 주세요.",
        "adminHint":
            "관리자 화면은 없습니다. 계정은 hospital users 명령으로, 감사 기록은 GET /admin/audit, 처리되지 못한 이벤트는 각 서비스의 /admin/dead-letters로 관리합니다.",
    ]

    static let en: [String: String] = [
        "appName": "Outpatient clinic", "skipToContent": "Skip to content", "languageName": "English",
        "otherLanguageName": "한국어", "desk": "Patient administration",
        "doctor": "Doctor", "examiner": "Examiner",
        "registration": "Registration", "patientName": "Patient name", "patientId": "Patient number",
        "birthDate": "Date of birth", "phone": "Phone", "department": "Department", "symptom": "Symptoms",
        "register": "Register", "optional": "optional", "chooseDepartment": "Choose a department",
        "board": "Today's visits", "status": "Status", "since": "For", "receivedAt": "Registered at",
        "actions": "Actions", "cancelReception": "Cancel registration", "noVisits": "No visits registered today.",
        "cancelTitle": "Cancel registration", "cancelReason": "Reason", "confirmCancel": "Cancel registration",
        "back": "Back", "boardLive": "Updates automatically every 2 seconds.", "search": "Search",
        "searchName": "Find by name", "allStatuses": "All statuses", "previous": "Previous", "next": "Next",
        "boardRange": "{from}–{to} of {total}", "boardSearch": "Search today's visits",
        "searchPatientId": "Find by patient number", "patientVisits": "Visits of patient number %@",
        "noPatientVisits": "No visits with this patient number.", "visitDateTime": "Registered",
        // the patient registry
        "patientSearch": "Find a patient", "name": "Name", "chartNumber": "Patient number", "sex": "Sex",
        "address": "Address", "residentNumber": "Resident registration number", "sex.M": "Male", "sex.F": "Female",
        "sex.U": "Unknown", "ageYears": "%d y", "sexAge": "Sex/age", "newPatient": "New patient",
        "registerPatient": "Register new patient", "noPatientsFound": "No patient found. You can register a new patient.",
        "chooseSex": "Choose sex", "confirmDistinct": "I checked: this is not the patient above.",
        "possibleDuplicate": "A patient with the same name and birth date is already registered. If it is the same person, choose them below; if not, tick the box and register again.",
        "duplicateResident": "A patient with this resident registration number is already registered. Choose them below.",
        "patientVisitsTitle": "Visits", "registerToday": "Register today's visit", "correctPatient": "Correct details",
        "saveCorrection": "Save", "mergedInto": "This record was merged into patient number %@.", "openMerged": "Open the merged record",
        "searchHint": "Enter at least one of name (its beginning), birth date, patient number or phone.",
        "notice.patientRegistered": "The new patient is registered.", "notice.corrected": "The patient's details are saved.",
        "error.searchEmpty": "Enter at least one thing to search by.",
        "error.stale": "Someone changed this patient first. The latest details are shown; check them and correct again.",
        "previousVisits": "Previous visits", "noPreviousVisits": "No previous visits.", "walkIn": "Quick registration (unregistered patient)",
        "worklist": "Patients waiting", "noDiagnoses": "No patients waiting.", "open": "Open", "patient": "Patient",
        "orderExams": "Order exams", "exams": "Exams", "results": "Exam results", "noOrders": "No exams ordered.",
        "completeConsultation": "Complete consultation", "rejectConsultation": "Reject consultation",
        "note": "Note", "reason": "Reason", "closed": "This consultation is closed.",
        "resultsLive": "Results appear as they arrive.", "orderedAt": "Ordered at",
        "examWorklist": "Exams waiting", "noExams": "No exams waiting.", "examResult": "Exam result",
        "performExam": "Perform exam", "cancelExam": "Cancel exam", "cancelExamReason": "Reason for canceling",
        "refresh": "Refresh", "examsChanged": "The list of exams has changed · Refresh",
        "notice.registered": "Registered.", "notice.canceled": "The registration was canceled.",
        "notice.prescribed": "Exams ordered.", "notice.completed": "Consultation completed.",
        "notice.rejected": "Consultation rejected.", "notice.performed": "Exam result saved.",
        "notice.examCanceled": "Exam canceled.",
        "error.conflict":
            "This has changed in the meantime and cannot be done now: it is '%@'. The page shows the current state.",
        "error.notFound": "It is not there any more; it may have been handled already.",
        "error.unavailable": "The %@ service cannot be reached right now. Please try again shortly.",
        "error.failed": "That did not work. Please try again shortly.",
        "error.invalid": "Please check what you entered.",
        "error.chooseExam": "Choose at least one exam.",
        "service.reception": "reception", "service.diagnosis": "consultation", "service.examination": "examination",
        "service.patient-management": "visit status",
        "rule.required": "%@ is required.", "rule.tooLong": "%@ is too long.",
        "rule.invalidFormat": "%@ is not in the right format.",
        "rule.invalidCharacters": "%@ contains characters that are not allowed.",
        "rule.inFuture": "%@ cannot be in the future.",
        "rule.duplicate": "The same exam cannot be ordered twice.", "rule.tooMany": "Too many exams.",
        "rule.outOfRange": "%@ is out of range.",
        "justNow": "just now", "minutes": "%d min", "hoursMinutes": "%d h %d min",
        // sign-in
        "signIn": "Sign in", "signOut": "Sign out", "username": "User name", "password": "Password",
        "usernameRequired": "Enter your user name.", "passwordRequired": "Enter your password.",
        "error.signIn": "Wrong user name or password. Repeated failures lock the account for a while.",
        "signInProvider": "Sign in with the hospital account",
        "attachments": "Attached files", "attachFile": "Attach file", "chooseFile": "Choose file",
        "dropHere": "Drop a file here or choose one (PNG, JPEG, PDF, DICOM · up to 50 MB)",
        "uploading": "Uploading", "openFile": "Open", "downloadFile": "Download", "noAttachments": "No attached files",
        "notice.attached": "The file is attached.",
        "error.attachType": "Only PNG, JPEG, PDF and DICOM files can be attached; this file's contents are none of them.",
        "error.attachSize": "The file is too large: up to 50 MB.",
        "error.attachInvalid": "The file is empty or its name cannot be used.",
        "error.attachClosed": "Files cannot be attached once the result is recorded or the exam is canceled.",
        "error.attach": "The file could not be attached. Try again.",
        "error.provider": "The sign-in server cannot be reached. Try again in a moment.",
        "error.providerSignIn": "The sign-in could not be completed. Try again.",
        "error.providerRole": "This account has no desk, doctor, examiner or administrator role. Ask an administrator.",
        "notice.signedOut": "You are signed out.", "role.desk": "Patient administration", "role.doctor": "Doctor",
        "role.examiner": "Examiner", "role.admin": "Administrator", "role.display": "Display",
        "displayTitle": "Waiting room", "displayPick": "Choose the department to show.",
        "displayCalling": "Now calling", "displayNext": "Next", "displayWaiting": "Waiting",
        "displayPeople": "", "displayNone": "No one is waiting.",
        "displayOffline": "Disconnected; reconnecting…", "displaySound": "Sound on",
        // calling
        "myRoom": "My room", "room": "Room", "noRoom": "None", "chooseRoom": "Choose", "workingIn": "Working in",
        "chooseRoomHint": "Choose your room to call patients of its department in queue order.",
        "queueNumber": "No.", "call": "Call", "recall": "Call again", "startConsultation": "Begin", "markAbsent": "No-show",
        "undoStep": "Undo (%@)", "step.CALL": "call", "step.RECALL": "call again", "step.START": "begin",
        "step.NO_SHOW": "no-show", "place.waiting": "Waiting", "place.called": "Called %d× · %@ · %@",
        "place.inConsultation": "In consultation · %@ · %@", "place.noShow": "No-show",
        "priority.EMERGENCY": "Emergency", "priority.CARE": "Care", "priority.NORMAL": "Normal", "priority": "Priority",
        "priorityCareLong": "Care (elderly, disability)", "priorityNormal": "Normal", "priorityEmergency": "Emergency",
        "notice.called": "Called.", "notice.started": "Consultation begun.", "notice.markedAbsent": "Marked as no-show.",
        "notice.undone": "Undone.", "notice.prioritized": "Priority changed.",
        "changePriority": "Priority", "priorityTitle": "Change priority", "confirmPriority": "Change priority",
        "place.calledShort": "Called %d× · %@", "place.inRoom": "In consultation · %@", "queueNumberShort": "Queue no.",
        "stage.WAITING": "Waiting", "stage.CALLED": "Called, not in", "stage.IN_CONSULTATION": "In consultation",
        "stage.EXAMS": "At exams", "waitsTitle": "Waiting too long", "waitsNone": "No one has waited past the alert times.",
        "waitsToday": "Today's wait (check-in to first call)", "waitsOpen": "Open", "waitsAmber": "Amber", "waitsRed": "Red",
        "waitsCalled": "Called", "waitsAverage": "Average", "waitsP90": "90th pct.", "waitLevel.amber": "Amber",
        "waitLevel.red": "Red", "sinceReceived": "Since check-in", "stageTime": "In this stage",
        "pairTitle": "Pair a waiting-room display", "pairCode": "Device code", "pair": "Pair",
        "pairHint": "Enter the display device code an administrator issued. Once paired, this browser opens only the waiting-room display until the device is revoked.",
        "error.pairing": "Cannot pair: the code is wrong, or the device was revoked.",
        "error.chooseRoom": "Choose your room first.", "error.chooseExamRoom": "Choose your exam room first.",
        "myExamRoom": "My exam room", "examRoom": "Exam room", "workingInExamRoom": "Working in",
        "chooseExamRoomHint": "Choose your exam room to call patients for its exams in queue order.",
        "startExam": "Begin exam", "place.inExam": "In exam · %@ · %@", "notice.examStarted": "Exam begun.",
        "refused.inExam": "%@ is already examining this patient in %@.",
        "refused.calledBy": "%@ has already called this patient to %@.",
        "refused.inConsultation": "%@ is already seeing this patient in %@.",
        "refused.tooFewCalls": "Called only %d times so far: call again before marking a no-show.",
        "refused.undo": "This cannot be undone: only your own last step, within a minute.",
        "refused.moved": "The patient's place changed meanwhile; check the list.",
        "adminHint":
            "There is no administrator screen: manage accounts with the hospital users command, the audit trail with GET /admin/audit, and events that could not be handled with each service's /admin/dead-letters.",
    ]

    /// The words for each status, Korean then English, by the kind of record.
    private static let statuses: [String: [String: (ko: String, en: String)]] = [
        // The board's words for a visit.
        "visit": [
            "RECEIVED": ("접수완료", "Registered"), "EXAM_ORDERED": ("검사처방", "Exams ordered"),
            "EXAM_DONE": ("검사완료", "Exams done"), "COMPLETED": ("진료완료", "Completed"),
            "REJECTED": ("진료거부", "Rejected"), "CANCELED": ("접수취소", "Canceled"),
        ],
        // The doctor's words for a consultation.
        "diagnosis": [
            "WAITING": ("진료 대기", "Waiting"), "EXAM_ORDERED": ("검사 대기", "Waiting for exams"),
            "EXAM_DONE": ("결과 확인", "Results ready"), "COMPLETED": ("진료 완료", "Completed"),
            "REJECTED": ("진료 거부", "Rejected"), "CANCELED": ("접수취소", "Canceled"),
        ],
        "exam": [
            "REQUESTED": ("검사 대기", "Waiting"), "COMPLETED": ("검사 완료", "Done"),
            "CANCELED": ("검사 취소", "Canceled"),
        ],
    ]

    private static func status(_ kind: String, _ status: String, _ language: Language) -> String {
        guard let words = statuses[kind]?[status] else { return status }
        return language == .ko ? words.ko : words.en
    }

    static func visitStatus(_ s: String, _ language: Language) -> String { status("visit", s, language) }
    static func diagnosisStatus(_ s: String, _ language: Language) -> String { status("diagnosis", s, language) }
    static func examStatus(_ s: String, _ language: Language) -> String { status("exam", s, language) }
}

/// The departments the desk chooses from; the Korean name is what is recorded.
enum Catalogue {
    static let departments: [(ko: String, en: String)] = [
        ("내과", "Internal medicine"), ("외과", "Surgery"), ("정형외과", "Orthopedics"),
        ("소아청소년과", "Pediatrics"), ("산부인과", "Obstetrics and gynecology"), ("이비인후과", "Otolaryngology"),
        ("피부과", "Dermatology"), ("안과", "Ophthalmology"), ("신경과", "Neurology"), ("가정의학과", "Family medicine"),
    ]

    /// The exams a doctor orders from: code, Korean name (recorded), English name.
    static let exams: [(code: String, ko: String, en: String)] = [
        ("CBC", "일반혈액검사", "Complete blood count"), ("CXR", "흉부 X선", "Chest X-ray"),
        ("UA", "소변검사", "Urinalysis"), ("ECG", "심전도", "Electrocardiogram"), ("US", "초음파", "Ultrasound"),
        ("CT", "전산화단층촬영", "CT scan"), ("MRI", "자기공명영상", "MRI"),
    ]

    static func department(_ recorded: String?, _ language: Language) -> String {
        guard let recorded else { return "" }
        guard language == .en else { return recorded }
        return departments.first { $0.ko == recorded }?.en ?? recorded
    }

    static func exam(code: String, name: String, _ language: Language) -> String {
        guard language == .en else { return name }
        return exams.first { $0.code == code }?.en ?? name
    }
}
