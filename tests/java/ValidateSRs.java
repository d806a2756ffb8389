// pixelmed's DicomSRValidator over many SR files in one JVM: its command line takes one file, and starting
// the JVM and building the validator (compiling its template XSLT) is most of the ~10 s a run takes; in one
// JVM an SR takes about 2.5 s. Each file's report follows a
// line "=== <path>". Run as a single-file program: java -cp pixelmed.jar ValidateSRs.java SR1.dcm SR2.dcm ...
import com.pixelmed.validate.DicomSRValidator;

public class ValidateSRs {
    public static void main(String[] args) throws Exception {
        DicomSRValidator validator = new DicomSRValidator();
        for (String path : args) {
            System.out.println("=== " + path);
            System.out.println(validator.validate(path));
        }
    }
}
